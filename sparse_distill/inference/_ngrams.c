/* Word n-grams at compiled speed, with exactly scikit-learn CountVectorizer's semantics for its
 * default token pattern `(?u)\b\w\w+\b`.
 *
 * Tokens. For str patterns, `\w` is `Py_UNICODE_ISALNUM(ch) || ch == '_'` (CPython's _sre,
 * SRE_UNI_IS_WORD) and `\b` is a change between word and non-word characters, so the pattern's
 * matches are exactly the maximal runs of two or more word characters. The test below calls the
 * running interpreter's own Unicode database, so it cannot drift from `re` between Python versions.
 * Lower-casing is Python's own `str.lower()` (U+0130 becomes two code points, a final sigma depends
 * on its neighbours); an ASCII-only text is lower-cased inline, where the two agree by definition.
 *
 * With scripts=True (the `scripts` token rule of sparse_distill/inference/tokens.py), each word
 * character of a script written without spaces between words (CJK, kana, Thai, ...:
 * is_unspaced) is a token of its own, with the combining marks that follow it, and a run of
 * other word characters stops at it; the rest is as above.
 *
 * N-grams. The n-grams are held in a trie whose edges live in one open-addressing hash table: a
 * node is a token (order 1) or (parent node, next token). An edge's key packs the parent's code and
 * the token's index into 64 bits, so a hit is exact: no hash collision can give a wrong id; a
 * token hit is verified against the token's stored code points. Walking the trie from a position
 * stops at the first prefix that no n-gram has, so most long n-grams of a text cost nothing.
 * Node codes: a token is its index t (< 2^31); a deeper node is DEEP | its index.
 *
 * Two objects use it:
 *   Index(ngrams, min_n, max_n, lowercase): the vocabulary, read-only once built. featurize(texts)
 *     gives CountVectorizer(vocabulary=ngrams).transform(texts) as CSR parts (ids ascending within
 *     each text, counts). It runs without the GIL, so threads featurise chunks in parallel.
 *     With buckets=B > 0 (fastText's hashing trick, for what the vocabulary lacks), a text's
 *     n-grams that are not in the vocabulary (bucket_ngrams) and the character n-grams of its
 *     words that are not in it as unigrams (minn..maxn, of the word wrapped in '<' '>') get the
 *     ids |V| + hash % B, after every vocabulary id.
 *   Counter(max_n, lowercase): term and document frequency of every n-gram of the texts added,
 *     each numbered in order of first occurrence (scikit-learn's analyzer order: a text's tokens,
 *     then its bigrams, ...); prune() drops the rare ones; strings() builds the text of only the
 *     n-grams asked for.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

#define DEEP 0x80000000u
#define EMPTY (-1)
#define MAX_ORDER 255

/* ------------------------------------------------------------------------------------------ */
/* Characters and hashes */

static unsigned char ascii_word[128];

static inline int is_word(Py_UCS4 c) {
    return c < 128 ? ascii_word[c] : (Py_UNICODE_ISALNUM(c) != 0);
}

/* Scripts written without spaces between words (the `scripts` token rule; its reference is
 * sparse_distill/inference/tokens.py, whose UNSPACED_BLOCKS these ranges must equal): Thai, Lao,
 * Myanmar, Khmer, CJK radicals, symbols (of which only the word characters 々 〆 〇 ... count),
 * Hiragana, Katakana, Bopomofo, CJK ideographs and their extensions, Yi; not Hangul
 * (0x3130-0x318F), whose words are spaced. A word character there is a token of its own, with
 * the combining marks (unspaced_mark) that follow it. */
static inline int is_unspaced(Py_UCS4 c) {
    if (c < 0x0E00) return 0;
    if (c < 0x3400)
        return c <= 0x0EFF || (c >= 0x1000 && c <= 0x109F) || (c >= 0x1780 && c <= 0x17FF) ||
               (c >= 0x19E0 && c <= 0x19FF) || (c >= 0x2E80 && c <= 0x312F) ||
               (c >= 0x3190 && c <= 0x31FF);
    if (c < 0x10000)
        return c <= 0x4DBF || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xA000 && c <= 0xA4CF) ||
               (c >= 0xA9E0 && c <= 0xA9FF) || (c >= 0xAA60 && c <= 0xAA7F) ||
               (c >= 0xF900 && c <= 0xFAFF) || (c >= 0xFF66 && c <= 0xFF9F);
    return (c >= 0x1AFF0 && c <= 0x1B16F) || (c >= 0x20000 && c <= 0x323AF);
}

/* The combining marks (Unicode category M*) of the unspaced blocks of the BMP, filled at import
 * from the interpreter's unicodedata: Thai vowel and tone marks, Myanmar and Khmer vowel signs,
 * kana voicing marks. None is a word character; after an unspaced character it belongs to it. */
static uint8_t unspaced_mark[0x10000 / 8];

static inline int is_unspaced_mark(Py_UCS4 c) {
    return c < 0x10000 && (unspaced_mark[c >> 3] >> (c & 7) & 1);
}

static inline Py_UCS4 read_char(int kind, const void *data, Py_ssize_t i, int lower_ascii) {
    Py_UCS4 c = PyUnicode_READ(kind, data, i);
    if (lower_ascii && c >= 'A' && c <= 'Z') c += 'a' - 'A';
    return c;
}

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static inline uint64_t mix64(uint64_t x) {  /* MurmurHash3's finaliser */
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* A token's key. A short token (at most 8 code points, all below 256: most words of most
 * languages written in Latin script) is its code points packed into 64 bits, an exact key that
 * needs no check; any other token is keyed by a hash (FNV-1a over its code points, finalised with
 * its length) and each hit is checked against its stored code points. The two kinds live in two
 * tables, so a packed key can never meet a hash. */
typedef struct {
    uint64_t fnv, packed;
    int64_t len;
    int is_short;
} KeyBuilder;

static inline void key_start(KeyBuilder *k) {
    k->fnv = FNV_OFFSET;
    k->packed = 0;
    k->len = 0;
    k->is_short = 1;
}

static inline void key_add(KeyBuilder *k, Py_UCS4 c) {
    k->fnv = (k->fnv ^ c) * FNV_PRIME;
    if (k->len < 8 && c < 256)
        k->packed |= (uint64_t)c << (8 * k->len);
    else
        k->is_short = 0;
    k->len++;
}

static inline uint64_t key_end(const KeyBuilder *k) {
    return k->is_short ? k->packed : mix64(k->fnv ^ (uint64_t)k->len);
}

/* ------------------------------------------------------------------------------------------ */
/* Growable arrays */

static int grow(void **ptr, int64_t *cap, int64_t need, size_t item) {
    if (need <= *cap) return 0;
    int64_t n = *cap > 0 ? *cap : 64;
    while (n < need) n *= 2;
    void *p = realloc(*ptr, (size_t)n * item);
    if (!p) return -1;
    *ptr = p;
    *cap = n;
    return 0;
}

#define GROW(arr, cap, need) grow((void **)&(arr), &(cap), (need), sizeof(*(arr)))

/* ------------------------------------------------------------------------------------------ */
/* One open-addressing table (linear probing) for tokens and for edges. Its slots number at
 * least `spread` times its entries: 2 (load <= 1/2) for counting, where memory matters most, 4
 * (load <= 1/4) for a vocabulary that featurises, where short probe runs do: on rt's 1M
 * n-grams, 4 made featurising 10-15% faster than 2, and 8 no faster than 4. */

typedef struct {
    uint64_t key;   /* tokens: the token's key (KeyBuilder); edges: parent code << 32 | token */
    int32_t idx;    /* the token's or deep node's index; EMPTY: a free slot */
    int32_t vocab;  /* Index: the vocabulary id of the n-gram this slot ends, -1 when none */
} Slot;

typedef struct {
    Slot *slots;
    uint64_t mask;
    int64_t used;
    int spread;
} Table;

/* Memory for a table. A large one is asked for in 2 MiB huge pages where the OS has them
 * (Linux transparent huge pages on request): its lookups are random, and with 4 KiB pages
 * nearly every one of them would also miss the TLB. */
static void *table_alloc(size_t bytes) {
#if defined(MADV_HUGEPAGE)
    const size_t huge = (size_t)2 << 20;
    if (bytes >= huge) {
        void *p = NULL;
        if (posix_memalign(&p, huge, bytes) != 0) return NULL;
        madvise(p, bytes, MADV_HUGEPAGE);  /* advice only: without it, 4 KiB pages */
        return p;
    }
#endif
    return malloc(bytes);
}

static int table_init(Table *t, int64_t expected, int spread) {
    uint64_t cap = 64;
    while ((int64_t)cap < spread * expected + 2) cap *= 2;
    t->slots = table_alloc(cap * sizeof(Slot));
    if (!t->slots) return -1;
    for (uint64_t i = 0; i < cap; i++) {
        t->slots[i].key = 0;
        t->slots[i].idx = EMPTY;
        t->slots[i].vocab = -1;
    }
    t->mask = cap - 1;
    t->used = 0;
    t->spread = spread;
    return 0;
}

static void table_free(Table *t) {
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

/* The slot holding `key`, or the free slot where it would go. For exact keys (edges, short
 * tokens); a long token's key is a hash, which token_slot checks against the token itself. */
static inline Slot *key_slot(const Table *t, uint64_t key) {
    uint64_t i = mix64(key) & t->mask;
    for (;;) {
        Slot *s = &t->slots[i];
        if (s->idx == EMPTY || s->key == key) return s;
        i = (i + 1) & t->mask;
    }
}

/* Called after an insertion: grows the table past its load. Slot pointers go stale. */
static int table_after_insert(Table *t) {
    t->used++;
    if (t->spread * t->used + 2 <= (int64_t)(t->mask + 1)) return 0;
    Table bigger;
    if (table_init(&bigger, t->used, t->spread) < 0) return -1;
    for (uint64_t i = 0; i <= t->mask; i++) {
        const Slot *s = &t->slots[i];
        if (s->idx == EMPTY) continue;
        uint64_t j = mix64(s->key) & bigger.mask;
        while (bigger.slots[j].idx != EMPTY) j = (j + 1) & bigger.mask;
        bigger.slots[j] = *s;
    }
    bigger.used = t->used;
    table_free(t);
    *t = bigger;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The trie shared by Index and Counter */

typedef struct {
    int64_t tf;    /* occurrences */
    int64_t df;    /* texts it occurs in */
    int64_t seen;  /* the last text that counted it */
    int64_t ord;   /* its rank in order of first occurrence */
} Counts;

typedef struct {
    int min_n, max_n, lowercase, counting;
    int scripts;  /* the scripts token rule (tokenize) */
    /* tokens (order-1 nodes): short ones by their exact packed key, the others by hash */
    Table short_tokens, tokens;
    uint32_t *chars;      /* every token's code points, one token after another */
    int64_t n_chars, cap_chars;
    int64_t *tok_start;   /* (n_tok,) where each token starts in `chars` */
    int32_t *tok_len;     /* (n_tok,) */
    int64_t n_tok, cap_tok_start, cap_tok_len;
    /* deeper nodes */
    Table edges;
    uint32_t *parent;     /* (n_deep,) the parent's code */
    int32_t *last;        /* (n_deep,) the token this node adds to its parent */
    uint8_t *depth;       /* (n_deep,) its order n */
    int64_t n_deep, cap_parent, cap_last, cap_depth;
    /* Counter: per token and per deep node (one cache line holds a node's counts) */
    Counts *tok_counts, *deep_counts;
    int64_t cap_tok_counts, cap_deep_counts;
    int64_t next_ord, n_docs;
    int64_t by_order[MAX_ORDER + 1];  /* nodes of each order */
} Trie;

static void trie_free(Trie *tr) {
    table_free(&tr->short_tokens);
    table_free(&tr->tokens);
    table_free(&tr->edges);
    free(tr->chars); free(tr->tok_start); free(tr->tok_len);
    free(tr->parent); free(tr->last); free(tr->depth);
    free(tr->tok_counts); free(tr->deep_counts);
    memset(tr, 0, sizeof(*tr));
}

static int trie_init(Trie *tr, int min_n, int max_n, int lowercase, int scripts, int counting,
                     int64_t expected) {
    memset(tr, 0, sizeof(*tr));
    tr->scripts = scripts;
    tr->min_n = min_n;
    tr->max_n = max_n;
    tr->lowercase = lowercase;
    tr->counting = counting;
    /* far fewer tokens than n-grams: that table grows as needed, and stays small and cached */
    int spread = counting ? 2 : 4;
    if (table_init(&tr->short_tokens, 1024, spread) < 0 ||
        table_init(&tr->tokens, 1024, spread) < 0 || table_init(&tr->edges, expected, spread) < 0) {
        trie_free(tr);
        return -1;
    }
    return 0;
}

/* The slot of the token spelt by text[start:start + len] (lower-cased ASCII when lower_ascii),
 * or the free slot where it would go. `key` and `is_short` are its key (KeyBuilder). */
static inline Slot *token_slot(const Trie *tr, uint64_t key, int is_short, int kind,
                               const void *data, Py_ssize_t start, Py_ssize_t len,
                               int lower_ascii) {
    if (is_short) return key_slot(&tr->short_tokens, key);
    const Table *t = &tr->tokens;
    uint64_t i = mix64(key) & t->mask;
    for (;;) {
        Slot *s = &t->slots[i];
        if (s->idx == EMPTY) return s;
        if (s->key == key && tr->tok_len[s->idx] == len) {
            const uint32_t *c = tr->chars + tr->tok_start[s->idx];
            Py_ssize_t j = 0;
            while (j < len && c[j] == read_char(kind, data, start + j, lower_ascii)) j++;
            if (j == len) return s;
        }
        i = (i + 1) & t->mask;
    }
}

static inline const Table *token_table(const Trie *tr, int is_short) {
    return is_short ? &tr->short_tokens : &tr->tokens;
}

/* The token's index, added if new; *added says which. -1: out of memory or of indices. */
static int64_t token_get_or_add(Trie *tr, uint64_t key, int is_short, int kind,
                                const void *data, Py_ssize_t start, Py_ssize_t len,
                                int lower_ascii, int *added) {
    Slot *s = token_slot(tr, key, is_short, kind, data, start, len, lower_ascii);
    *added = 0;
    if (s->idx != EMPTY) return s->idx;
    int64_t t = tr->n_tok;
    if (t >= (int64_t)DEEP - 1) return -1;
    if (GROW(tr->tok_start, tr->cap_tok_start, t + 1) < 0 ||
        GROW(tr->tok_len, tr->cap_tok_len, t + 1) < 0 ||
        GROW(tr->chars, tr->cap_chars, tr->n_chars + len) < 0)
        return -1;
    if (tr->counting && GROW(tr->tok_counts, tr->cap_tok_counts, t + 1) < 0) return -1;
    tr->tok_start[t] = tr->n_chars;
    tr->tok_len[t] = (int32_t)len;
    for (Py_ssize_t j = 0; j < len; j++)
        tr->chars[tr->n_chars++] = read_char(kind, data, start + j, lower_ascii);
    if (tr->counting) tr->tok_counts[t] = (Counts){0, 0, -1, tr->next_ord++};
    s->key = key;
    s->idx = (int32_t)t;
    s->vocab = -1;
    tr->n_tok++;
    tr->by_order[1]++;
    *added = 1;
    if (table_after_insert(is_short ? &tr->short_tokens : &tr->tokens) < 0) return -1;
    return t;
}

/* The deep node (parent, token) of order `order`, added if new. -1: out of memory or indices. */
static int64_t edge_get_or_add(Trie *tr, uint32_t parent_code, int32_t token, int order,
                               int *added) {
    uint64_t key = ((uint64_t)parent_code << 32) | (uint32_t)token;
    Slot *s = key_slot(&tr->edges, key);
    *added = 0;
    if (s->idx != EMPTY) return s->idx;
    int64_t d = tr->n_deep;
    if (d >= (int64_t)DEEP - 1) return -1;
    if (GROW(tr->parent, tr->cap_parent, d + 1) < 0 || GROW(tr->last, tr->cap_last, d + 1) < 0 ||
        GROW(tr->depth, tr->cap_depth, d + 1) < 0)
        return -1;
    if (tr->counting && GROW(tr->deep_counts, tr->cap_deep_counts, d + 1) < 0) return -1;
    tr->parent[d] = parent_code;
    tr->last[d] = token;
    tr->depth[d] = (uint8_t)order;
    if (tr->counting) tr->deep_counts[d] = (Counts){0, 0, -1, tr->next_ord++};
    s->key = key;
    s->idx = (int32_t)d;
    s->vocab = -1;
    tr->n_deep++;
    tr->by_order[order]++;
    *added = 1;
    if (table_after_insert(&tr->edges) < 0) return -1;
    return d;
}

/* ------------------------------------------------------------------------------------------ */
/* Tokenising one text: the maximal runs of >= 2 word characters, each with its key */

typedef struct {
    Py_ssize_t *start;
    int32_t *len;
    uint64_t *key;
    uint8_t *is_short;
    int64_t n, cap_start, cap_len, cap_key, cap_short;
} Runs;

static void runs_free(Runs *r) {
    free(r->start); free(r->len); free(r->key); free(r->is_short);
    memset(r, 0, sizeof(*r));
}

/* Room for every token a text of n code points can hold (a token and its separator take at
 * least 3; with the scripts rule a token can be one code point), so that tokenising checks no
 * capacity. */
static int runs_reserve(Runs *r, Py_ssize_t n, int scripts) {
    int64_t need = r->n + (scripts ? n : n / 3) + 1;
    return GROW(r->start, r->cap_start, need) < 0 || GROW(r->len, r->cap_len, need) < 0 ||
           GROW(r->key, r->cap_key, need) < 0 || GROW(r->is_short, r->cap_short, need) < 0
           ? -1 : 0;
}

static inline void runs_push(Runs *r, Py_ssize_t start, Py_ssize_t len, uint64_t key,
                             int is_short) {
    r->start[r->n] = start;
    r->len[r->n] = (int32_t)len;
    r->key[r->n] = key;
    r->is_short[r->n] = (uint8_t)is_short;
    r->n++;
}

static unsigned char latin1_word[256];  /* is_word for the code points of 1-byte strings */

/* Append the text's tokens to `out`: the maximal runs of two or more word characters, and with
 * `scripts` each word character of an unspaced script (with its marks) on its own, the runs
 * then stopping at it. One-byte strings (ASCII and Latin-1, most text, none of it unspaced)
 * take a loop of their own: a table lookup a character, and every token of at most 8
 * characters is its own exact key, so only longer ones are hashed. */
static int tokenize(int kind, const void *data, Py_ssize_t n, int lower_ascii, int scripts,
                    Runs *out) {
    if (runs_reserve(out, n, scripts && kind != PyUnicode_1BYTE_KIND) < 0) return -1;
    Py_ssize_t i = 0;
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *t = data;
        while (i < n) {
            if (!latin1_word[t[i]]) {
                i++;
                continue;
            }
            Py_ssize_t start = i;
            uint64_t packed = 0;
            do {
                Py_UCS4 c = t[i];
                if (lower_ascii && c >= 'A' && c <= 'Z') c += 'a' - 'A';
                if (i - start < 8) packed |= (uint64_t)c << (8 * (i - start));
                i++;
            } while (i < n && latin1_word[t[i]]);
            Py_ssize_t len = i - start;
            if (len < 2) continue;
            if (len <= 8) {
                runs_push(out, start, len, packed, 1);
                continue;
            }
            KeyBuilder k;
            key_start(&k);
            for (Py_ssize_t j = start; j < i; j++) key_add(&k, read_char(kind, data, j, lower_ascii));
            runs_push(out, start, len, key_end(&k), 0);
        }
        return 0;
    }
    while (i < n) {
        Py_UCS4 c = read_char(kind, data, i, lower_ascii);
        if (!is_word(c)) {
            i++;
            continue;
        }
        Py_ssize_t start = i;
        KeyBuilder k;
        key_start(&k);
        if (scripts && is_unspaced(c)) {
            key_add(&k, c);
            while (++i < n && is_unspaced_mark(c = read_char(kind, data, i, lower_ascii)))
                key_add(&k, c);
            runs_push(out, start, i - start, key_end(&k), k.is_short);
            continue;
        }
        for (;;) {
            key_add(&k, c);
            if (++i == n) break;
            c = read_char(kind, data, i, lower_ascii);
            if (!is_word(c) || (scripts && is_unspaced(c))) break;
        }
        Py_ssize_t len = i - start;
        if (len >= 2) runs_push(out, start, len, key_end(&k), k.is_short);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Texts prepared under the GIL: lower-cased where needed, held alive while the GIL is released */

typedef struct {
    PyObject **objs;   /* new references */
    char *lower_ascii; /* lower-case this text inline while reading it (ASCII) */
    Py_ssize_t n;
} Prepared;

static void prepared_free(Prepared *p) {
    if (p->objs)
        for (Py_ssize_t i = 0; i < p->n; i++) Py_XDECREF(p->objs[i]);
    free(p->objs);
    free(p->lower_ascii);
    memset(p, 0, sizeof(*p));
}

static PyObject *str_lower;  /* the method descriptor str.lower */

static int prepare(PyObject *texts, int lowercase, Prepared *p) {
    memset(p, 0, sizeof(*p));
    PyObject *seq = PySequence_Fast(texts, "texts must be a sequence of str");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    p->objs = calloc((size_t)(n > 0 ? n : 1), sizeof(PyObject *));
    p->lower_ascii = calloc((size_t)(n > 0 ? n : 1), 1);
    if (!p->objs || !p->lower_ascii) {
        Py_DECREF(seq);
        prepared_free(p);
        PyErr_NoMemory();
        return -1;
    }
    p->n = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = items[i];
        if (!PyUnicode_Check(t)) {
            PyErr_Format(PyExc_TypeError, "texts[%zd] is %.100s, not str", i,
                         Py_TYPE(t)->tp_name);
            Py_DECREF(seq);
            prepared_free(p);
            return -1;
        }
        if (PyUnicode_READY(t) < 0) {
            Py_DECREF(seq);
            prepared_free(p);
            return -1;
        }
        if (lowercase && !PyUnicode_IS_ASCII(t)) {
            p->objs[i] = PyObject_CallOneArg(str_lower, t);
            if (!p->objs[i]) {
                Py_DECREF(seq);
                prepared_free(p);
                return -1;
            }
        } else {
            Py_INCREF(t);
            p->objs[i] = t;
            p->lower_ascii[i] = (char)lowercase;
        }
    }
    Py_DECREF(seq);
    return 0;
}

static PyObject *bytearray_of(const void *data, int64_t n_bytes) {
    return PyByteArray_FromStringAndSize(n_bytes > 0 ? (const char *)data : "",
                                         (Py_ssize_t)n_bytes);
}

/* ------------------------------------------------------------------------------------------ */
/* Index: the vocabulary, and featurize() */

typedef struct {
    int64_t base, buckets;  /* ids base .. base + buckets - 1; buckets 0: off */
    int ngrams;             /* unseen word n-grams get a bucket */
    int minn, maxn;         /* unseen words' character n-grams (0, 0: none) */
} Buckets;

typedef struct {
    PyObject_HEAD
    Trie trie;
    Buckets buckets;
    Py_ssize_t size;
    int ready;
} IndexObject;

static void Index_dealloc(IndexObject *self) {
    trie_free(&self->trie);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Add vocabulary n-gram `id`: its tokens are the parts between single spaces (scikit-learn joins
 * an n-gram's tokens with one space, and a token holds no space). An n-gram the tokenizer can
 * never produce (an empty part, a non-word character, a one-character part, an order outside
 * [min_n, max_n]) can never match, as in scikit-learn: it is left out.
 * 0: added or left out; 1: a duplicate; -1: out of memory. */
static int index_add(Trie *tr, PyObject *ngram, int32_t id, Runs *runs) {
    int kind = PyUnicode_KIND(ngram);
    const void *data = PyUnicode_DATA(ngram);
    Py_ssize_t n = PyUnicode_GET_LENGTH(ngram);
    runs->n = 0;
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (i < n && PyUnicode_READ(kind, data, i) != ' ') continue;
        Py_ssize_t len = i - start;
        if (len == 0) return 0;
        /* scripts: an unspaced word character and its marks, or a run of 2+ other word
         * characters */
        Py_UCS4 first = PyUnicode_READ(kind, data, start);
        int single = tr->scripts && is_unspaced(first) && is_word(first);
        if (len < 2 && !single) return 0;
        KeyBuilder k;
        key_start(&k);
        for (Py_ssize_t j = start; j < i; j++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, j);
            if (single ? j > start && !is_unspaced_mark(c)
                       : !is_word(c) || (tr->scripts && is_unspaced(c)))
                return 0;
            key_add(&k, c);
        }
        if (runs->n == tr->max_n) return 0;
        if (runs_reserve(runs, 3, 0) < 0) return -1;
        runs_push(runs, start, len, key_end(&k), k.is_short);
        start = i + 1;
    }
    if (runs->n < tr->min_n) return 0;
    int added;
    int64_t t = token_get_or_add(tr, runs->key[0], runs->is_short[0], kind, data,
                                 runs->start[0], runs->len[0], 0, &added);
    if (t < 0) return -1;
    uint32_t code = (uint32_t)t;
    uint64_t edge_key = 0;
    for (int64_t k = 1; k < runs->n; k++) {
        int64_t u = token_get_or_add(tr, runs->key[k], runs->is_short[k], kind, data,
                                     runs->start[k], runs->len[k], 0, &added);
        if (u < 0) return -1;
        int64_t d = edge_get_or_add(tr, code, (int32_t)u, (int)k + 1, &added);
        if (d < 0) return -1;
        edge_key = ((uint64_t)code << 32) | (uint32_t)u;
        code = DEEP | (uint32_t)d;
    }
    /* looked up again: an insertion may have moved the slots */
    Slot *slot = runs->n == 1
        ? token_slot(tr, runs->key[0], runs->is_short[0], kind, data, runs->start[0],
                     runs->len[0], 0)
        : key_slot(&tr->edges, edge_key);
    if (slot->vocab >= 0) return 1;
    slot->vocab = id;
    return 0;
}

static int Index_init(IndexObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ngrams", "min_n", "max_n", "lowercase", "buckets",
                             "bucket_ngrams", "minn", "maxn", "scripts", NULL};
    PyObject *ngrams;
    int min_n, max_n, lowercase, bucket_ngrams = 1, minn = 0, maxn = 0, scripts = 0;
    long long buckets = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Oiip|Lpiip", kwlist, &ngrams, &min_n, &max_n,
                                     &lowercase, &buckets, &bucket_ngrams, &minn, &maxn,
                                     &scripts))
        return -1;
    if (buckets < 0 || minn < 0 || maxn < minn || maxn > MAX_ORDER || (minn == 0 && maxn > 0)) {
        PyErr_Format(PyExc_ValueError, "buckets must be >= 0 and the character n-gram lengths "
                     "0 <= minn <= maxn <= %d (minn >= 1 unless both are 0), got %lld, (%d, %d)",
                     MAX_ORDER, buckets, minn, maxn);
        return -1;
    }
    if (self->ready) {  /* featurize() may be reading the tables in another thread */
        PyErr_SetString(PyExc_RuntimeError, "an Index is built once; make a new one");
        return -1;
    }
    if (min_n < 1 || max_n < min_n || max_n > MAX_ORDER) {
        PyErr_Format(PyExc_ValueError, "the n-gram range must satisfy 1 <= min_n <= max_n <= %d, "
                     "got (%d, %d)", MAX_ORDER, min_n, max_n);
        return -1;
    }
    PyObject *seq = PySequence_Fast(ngrams, "ngrams must be a sequence of str");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if ((long long)n + buckets >= (long long)INT32_MAX) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "too many n-grams and buckets: at most 2**31 - 2");
        return -1;
    }
    if (trie_init(&self->trie, min_n, max_n, lowercase, scripts, 0, n) < 0) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    Runs runs = {0};
    int status = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *g = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(g)) {
            PyErr_Format(PyExc_TypeError, "ngrams[%zd] is %.100s, not str", i,
                         Py_TYPE(g)->tp_name);
            status = -2;
            break;
        }
        status = index_add(&self->trie, g, (int32_t)i, &runs);
        if (status == 1) {
            PyErr_Format(PyExc_ValueError, "ngrams[%zd] is a duplicate: %R", i, g);
            status = -2;
        }
        if (status != 0) break;
    }
    runs_free(&runs);
    Py_DECREF(seq);
    if (status == -1) PyErr_NoMemory();
    if (status != 0) {
        trie_free(&self->trie);
        return -1;
    }
    self->size = n;
    self->buckets = (Buckets){n, buckets, bucket_ngrams, minn, maxn};
    self->ready = 1;
    return 0;
}

/* One featurize() call's output and scratch space. */
typedef struct {
    int32_t *ids;      /* (nnz,) */
    float *weights;    /* (nnz,) */
    int64_t nnz, cap_ids, cap_weights;
    int64_t *offsets;  /* (n_texts + 1,) where each text starts in ids, then the end */
    int32_t *hits;     /* one text's vocabulary ids, before sorting and counting */
    int32_t *spare;    /* as many, for the merge sort */
    int64_t n_hits, cap_hits, cap_spare;
    int32_t *toks;     /* one text's token indices, EMPTY for a token no n-gram has */
    int32_t *alive;    /* the positions whose next n-gram is being looked up */
    uint64_t *keys;    /* by position: the edge that lookup is for */
    uint64_t *starts;  /* by position: the slot it starts at */
    int64_t cap_toks, cap_alive, cap_keys, cap_starts;
    uint8_t *found;    /* buckets: by (position, order - 1), whether that n-gram is in the vocab */
    int64_t cap_found;
    Runs runs;
} Output;

static void output_free(Output *o) {
    free(o->ids); free(o->weights); free(o->offsets); free(o->hits); free(o->spare);
    free(o->toks); free(o->alive); free(o->keys); free(o->starts); free(o->found);
    runs_free(&o->runs);
    memset(o, 0, sizeof(*o));
}

/* Sort a text's ids (tens to thousands of them, in no order: the unigrams by position, then the
 * bigrams, ...). Comparison branches on such data are coin flips, so every step here is
 * branch-free: sorted runs of 4 by a sorting network, then merges whose loop picks each element
 * with a conditional move. Returns the array now holding the result (`a` or `spare`). */
#define CSWAP(x, y) do { int32_t lo_ = x < y ? x : y, hi_ = x < y ? y : x; x = lo_; y = hi_; } \
    while (0)

static int32_t *sort_ids(int32_t *a, int32_t *spare, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        int32_t *q = a + i;
        CSWAP(q[0], q[1]); CSWAP(q[2], q[3]); CSWAP(q[0], q[2]); CSWAP(q[1], q[3]);
        CSWAP(q[1], q[2]);
    }
    for (int64_t k = i + 1; k < n; k++)  /* the last 0-3 */
        for (int64_t j = k; j > i && a[j - 1] > a[j]; j--) CSWAP(a[j - 1], a[j]);
    int32_t *src = a, *dst = spare;
    for (int64_t width = 4; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n;
            int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t x = lo, y = mid, k = lo;
            while (x < mid && y < hi) {
                int32_t u = src[x], v = src[y];
                int take = v < u;
                dst[k++] = take ? v : u;
                y += take;
                x += !take;
            }
            while (x < mid) dst[k++] = src[x++];
            while (y < hi) dst[k++] = src[y++];
        }
        int32_t *t = src;
        src = dst;
        dst = t;
    }
    return src;
}

/* Prefetch the line of the slot where a lookup of `key` starts. */
static inline uint64_t slot_start(const Table *t, uint64_t key) {
    uint64_t i = mix64(key) & t->mask;
    PREFETCH(&t->slots[i]);
    return i;
}

static inline Slot *slot_from(const Table *t, uint64_t key, uint64_t i) {
    for (;;) {
        Slot *s = &t->slots[i];
        if (s->idx == EMPTY || s->key == key) return s;
        i = (i + 1) & t->mask;
    }
}

/* One text's row. The trie is walked one order at a time over every position still alive.
 * The table is far larger than the caches, so each lookup's line is prefetched one pass
 * ahead: the moment a position's n-gram is resolved, the lookup of its (n + 1)-gram is computed
 * and prefetched, to be used in the next pass, after every other position has had its turn. */
/* The bucket ids of what the vocabulary lacks (Buckets), appended to o->hits: each word n-gram
 * not found in it, hashed from its tokens' keys, and each character n-gram of a word not in it
 * as a unigram. The two hash families start from different seeds. */
#define SEED_WORDS 0x9e3779b97f4a7c15ULL
#define SEED_CHARS 0xc2b2ae3d27d4eb4fULL

static int add_buckets(const Buckets *b, int min_n, int max_n, int kind, const void *data,
                       int lower_ascii, Output *o) {
    const Runs *r = &o->runs;
    const int64_t nt = r->n;
    int64_t need = nt * (int64_t)max_n;  /* vocabulary hits and word n-gram buckets together */
    if (b->maxn > 0)
        for (int64_t k = 0; k < nt; k++)
            if (!o->found[k * max_n]) need += (r->len[k] + 2) * (int64_t)(b->maxn - b->minn + 1);
    if (GROW(o->hits, o->cap_hits, need) < 0 || GROW(o->spare, o->cap_spare, need) < 0)
        return -1;
    const uint64_t n_buckets = (uint64_t)b->buckets;
    for (int64_t k = 0; b->ngrams && k < nt; k++) {
        uint64_t h = SEED_WORDS;
        for (int n = 1; n <= max_n && k + n <= nt; n++) {
            h = mix64(h ^ r->key[k + n - 1]);
            if (n >= min_n && !o->found[k * max_n + n - 1])
                o->hits[o->n_hits++] = (int32_t)(b->base + (int64_t)(h % n_buckets));
        }
    }
    for (int64_t k = 0; b->maxn > 0 && k < nt; k++) {
        if (o->found[k * max_n]) continue;
        const int64_t wrapped = r->len[k] + 2;  /* '<' word '>' */
        for (int64_t s = 0; s < wrapped; s++) {
            uint64_t h = SEED_CHARS;
            for (int m = 1; m <= b->maxn && s + m <= wrapped; m++) {
                int64_t at = s + m - 1;
                Py_UCS4 c = at == 0 ? '<' : at == wrapped - 1
                    ? '>' : read_char(kind, data, r->start[k] + at - 1, lower_ascii);
                h = mix64(h ^ c);
                /* a bracket alone is in every word: no information (fastText skips it too) */
                if (m >= b->minn && !(m == 1 && (at == 0 || at == wrapped - 1)))
                    o->hits[o->n_hits++] = (int32_t)(b->base + (int64_t)(h % n_buckets));
            }
        }
    }
    return 0;
}

static int featurize_one(const Trie *tr, const Buckets *b, PyObject *text, int lower_ascii,
                         int mean, Output *o) {
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Runs *r = &o->runs;
    r->n = 0;
    if (tokenize(kind, data, PyUnicode_GET_LENGTH(text), lower_ascii, tr->scripts, r) < 0)
        return -1;
    const int64_t nt = r->n;
    const int min_n = tr->min_n, max_n = tr->max_n;
    if (GROW(o->toks, o->cap_toks, nt) < 0 || GROW(o->alive, o->cap_alive, nt) < 0 ||
        GROW(o->keys, o->cap_keys, nt) < 0 || GROW(o->starts, o->cap_starts, nt) < 0 ||
        GROW(o->hits, o->cap_hits, nt * (int64_t)max_n) < 0 ||
        GROW(o->spare, o->cap_spare, nt * (int64_t)max_n) < 0)
        return -1;
    const int track = b->buckets > 0;  /* record which n-grams the vocabulary has */
    if (track) {
        if (GROW(o->found, o->cap_found, nt * (int64_t)max_n) < 0) return -1;
        memset(o->found, 0, (size_t)(nt * max_n));
    }
    for (int64_t k = 0; k < nt; k++) slot_start(token_table(tr, r->is_short[k]), r->key[k]);
    o->n_hits = 0;
    int64_t n_alive = 0;  /* positions whose next lookup is prefetched, with keys[i], starts[i] */
    for (int64_t k = 0; k < nt; k++) {
        const Slot *s = token_slot(tr, r->key[k], r->is_short[k], kind, data, r->start[k],
                                   r->len[k], lower_ascii);
        o->toks[k] = s->idx;
        if (s->idx == EMPTY) continue;
        if (track && s->vocab >= 0) o->found[k * max_n] = 1;
        if (min_n == 1 && s->vocab >= 0) o->hits[o->n_hits++] = s->vocab;
        if (k > 0 && o->toks[k - 1] != EMPTY && max_n >= 2) {  /* the bigram at k - 1 */
            uint64_t key = ((uint64_t)(uint32_t)o->toks[k - 1] << 32) | (uint32_t)s->idx;
            o->keys[k - 1] = key;
            o->starts[k - 1] = slot_start(&tr->edges, key);
            o->alive[n_alive++] = (int32_t)(k - 1);
        }
    }
    for (int n = 2; n <= max_n && n_alive > 0; n++) {
        int64_t m = 0;
        for (int64_t j = 0; j < n_alive; j++) {
            int32_t i = o->alive[j];
            const Slot *s = slot_from(&tr->edges, o->keys[i], o->starts[i]);
            if (s->idx == EMPTY) continue;  /* no n-gram continues this prefix */
            if (n >= min_n && s->vocab >= 0) {
                o->hits[o->n_hits++] = s->vocab;
                if (track) o->found[i * max_n + n - 1] = 1;
            }
            if (n < max_n && i + n < nt && o->toks[i + n] != EMPTY) {  /* its (n + 1)-gram */
                uint64_t key = ((uint64_t)(DEEP | (uint32_t)s->idx) << 32) |
                               (uint32_t)o->toks[i + n];
                o->keys[i] = key;
                o->starts[i] = slot_start(&tr->edges, key);
                o->alive[m++] = i;
            }
        }
        n_alive = m;
    }
    if (track && add_buckets(b, min_n, max_n, kind, data, lower_ascii, o) < 0) return -1;
    /* CountVectorizer's row: the distinct ids ascending, each with its count */
    const int32_t *hits = sort_ids(o->hits, o->spare, o->n_hits);
    if (GROW(o->ids, o->cap_ids, o->nnz + o->n_hits) < 0 ||
        GROW(o->weights, o->cap_weights, o->nnz + o->n_hits) < 0)
        return -1;
    for (int64_t a = 0; a < o->n_hits;) {
        int64_t b = a + 1;
        while (b < o->n_hits && hits[b] == hits[a]) b++;
        o->ids[o->nnz] = hits[a];
        /* mean: count / total in float32, which equals numpy's float64 division rounded to
         * float32 (53 >= 2 * 24 + 2 bits: double rounding of a quotient is exact) */
        o->weights[o->nnz] = mean ? (float)(b - a) / (float)o->n_hits : (float)(b - a);
        o->nnz++;
        a = b;
    }
    return 0;
}

static PyObject *Index_featurize(IndexObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"texts", "mean", NULL};
    PyObject *texts;
    int mean = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|p", kwlist, &texts, &mean)) return NULL;
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "the Index was not built");
        return NULL;
    }
    Prepared p;
    if (prepare(texts, self->trie.lowercase, &p) < 0) return NULL;
    Output o = {0};
    int status = 0;
    Py_ssize_t n = p.n;
    o.offsets = malloc((size_t)(n + 1) * sizeof(int64_t));
    if (!o.offsets) status = -1;
    else o.offsets[0] = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && status == 0; i++) {
        status = featurize_one(&self->trie, &self->buckets, p.objs[i], p.lower_ascii[i], mean,
                               &o);
        o.offsets[i + 1] = o.nnz;
    }
    Py_END_ALLOW_THREADS
    prepared_free(&p);
    PyObject *result = NULL;
    if (status < 0) {
        PyErr_NoMemory();
    } else {
        PyObject *ids = bytearray_of(o.ids, o.nnz * (int64_t)sizeof(int32_t));
        PyObject *offsets = bytearray_of(o.offsets, (int64_t)(n + 1) * (int64_t)sizeof(int64_t));
        PyObject *weights = bytearray_of(o.weights, o.nnz * (int64_t)sizeof(float));
        if (ids && offsets && weights) result = PyTuple_Pack(3, ids, offsets, weights);
        Py_XDECREF(ids);
        Py_XDECREF(offsets);
        Py_XDECREF(weights);
    }
    output_free(&o);
    return result;
}

static Py_ssize_t Index_length(IndexObject *self) {
    return self->size;
}

static PyObject *Index_nbytes(IndexObject *self, void *Py_UNUSED(closure)) {
    const Trie *tr = &self->trie;
    int64_t slots = self->ready ? (int64_t)(tr->short_tokens.mask + tr->tokens.mask +
                                            tr->edges.mask + 3) : 0;
    return PyLong_FromLongLong(slots * (int64_t)sizeof(Slot) + tr->cap_chars * 4
                               + tr->cap_tok_start * 8 + tr->cap_tok_len * 4
                               + tr->cap_parent * 4 + tr->cap_last * 4 + tr->cap_depth);
}

static PyMethodDef Index_methods[] = {
    {"featurize", (PyCFunction)(void (*)(void))Index_featurize, METH_VARARGS | METH_KEYWORDS,
     "featurize(texts, mean=False) -> (ids, offsets, weights): bytearrays of int32, int64 and "
     "float32, CountVectorizer's CSR rows: per text, its distinct vocabulary ids in ascending "
     "order and each one's count in the text (count / the text's total with mean=True); text i "
     "is ids[offsets[i]:offsets[i + 1]]. Runs without the GIL."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef Index_getset[] = {
    {"nbytes", (getter)Index_nbytes, NULL, "Memory held by the index, in bytes.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PySequenceMethods Index_as_sequence = {
    .sq_length = (lenfunc)Index_length,
};

static PyTypeObject IndexType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sparse_distill.inference._ngrams.Index",
    .tp_basicsize = sizeof(IndexObject),
    .tp_dealloc = (destructor)Index_dealloc,
    .tp_as_sequence = &Index_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Index(ngrams, min_n, max_n, lowercase, buckets=0, bucket_ngrams=True, minn=0, "
              "maxn=0, scripts=False): word n-grams (tokens joined by one space; an n-gram's "
              "id is its position) to featurize texts with, and `buckets` hashed ids after them for the "
              "n-grams it lacks and the character n-grams of the words it lacks.",
    .tp_methods = Index_methods,
    .tp_getset = Index_getset,
    .tp_init = (initproc)Index_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------------------------------ */
/* Counter */

typedef struct {
    PyObject_HEAD
    Trie trie;
    Runs runs;
    int32_t *toks;    /* one text's token indices */
    uint32_t *codes;  /* the node of the n-gram of the current order starting at each token */
    uint64_t *keys;   /* the edge looked up from each position */
    int64_t cap_toks, cap_codes, cap_keys;
    int ready;
} CounterObject;

static void Counter_dealloc(CounterObject *self) {
    trie_free(&self->trie);
    runs_free(&self->runs);
    free(self->toks);
    free(self->codes);
    free(self->keys);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Counter_init(CounterObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_n", "lowercase", "scripts", NULL};
    int max_n, lowercase, scripts = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ip|p", kwlist, &max_n, &lowercase, &scripts))
        return -1;
    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "a Counter is built once; make a new one");
        return -1;
    }
    if (max_n < 1 || max_n > MAX_ORDER) {
        PyErr_Format(PyExc_ValueError, "max_n must be in [1, %d], got %d", MAX_ORDER, max_n);
        return -1;
    }
    if (trie_init(&self->trie, 1, max_n, lowercase, scripts, 1, 1 << 16) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    self->ready = 1;
    return 0;
}

static inline void count(Counts *c, int64_t doc) {
    c->tf++;
    if (c->seen != doc) {
        c->seen = doc;
        c->df++;
    }
}

/* Count one text's n-grams. New n-grams are numbered in the analyzer's order (the text's tokens,
 * then its bigrams, ...); each order's lookups are prefetched together, then resolved in order. */
static int count_one(CounterObject *self, PyObject *text, int lower_ascii) {
    Trie *tr = &self->trie;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Runs *r = &self->runs;
    r->n = 0;
    if (tokenize(kind, data, PyUnicode_GET_LENGTH(text), lower_ascii, tr->scripts, r) < 0)
        return -1;
    const int64_t doc = tr->n_docs++;
    const int64_t nt = r->n;
    if (GROW(self->toks, self->cap_toks, nt) < 0 || GROW(self->codes, self->cap_codes, nt) < 0 ||
        GROW(self->keys, self->cap_keys, nt) < 0)
        return -1;
    for (int64_t k = 0; k < nt; k++) slot_start(token_table(tr, r->is_short[k]), r->key[k]);
    for (int64_t k = 0; k < nt; k++) {
        int added;
        int64_t t = token_get_or_add(tr, r->key[k], r->is_short[k], kind, data, r->start[k],
                                     r->len[k], lower_ascii, &added);
        if (t < 0) return -1;
        PREFETCH(&tr->tok_counts[t]);
        self->toks[k] = (int32_t)t;
        self->codes[k] = (uint32_t)t;
    }
    for (int64_t k = 0; k < nt; k++) count(&tr->tok_counts[self->toks[k]], doc);
    for (int n = 2; n <= tr->max_n && n <= nt; n++) {
        const int64_t m = nt - n + 1;
        for (int64_t i = 0; i < m; i++) {
            self->keys[i] = ((uint64_t)self->codes[i] << 32) | (uint32_t)self->toks[i + n - 1];
            slot_start(&tr->edges, self->keys[i]);
        }
        for (int64_t i = 0; i < m; i++) {
            int added;
            int64_t d = edge_get_or_add(tr, (uint32_t)(self->keys[i] >> 32),
                                        (int32_t)(uint32_t)self->keys[i], n, &added);
            if (d < 0) return -1;
            PREFETCH(&tr->deep_counts[d]);
            self->codes[i] = DEEP | (uint32_t)d;
        }
        for (int64_t i = 0; i < m; i++) count(&tr->deep_counts[self->codes[i] & ~DEEP], doc);
    }
    return 0;
}

static PyObject *Counter_add(CounterObject *self, PyObject *texts) {
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "the Counter was not built");
        return NULL;
    }
    Prepared p;
    if (prepare(texts, self->trie.lowercase, &p) < 0) return NULL;
    int status = 0;
    for (Py_ssize_t i = 0; i < p.n && status == 0; i++)
        status = count_one(self, p.objs[i], p.lower_ascii[i]);
    prepared_free(&p);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* The candidates of order >= min_n in order of first occurrence: (codes, tf, df) as bytearrays
 * of uint32, int64, int64. Tokens and deep nodes are each stored in that order: merge them. */
static PyObject *Counter_candidates(CounterObject *self, PyObject *args) {
    int min_n;
    if (!PyArg_ParseTuple(args, "i", &min_n)) return NULL;
    const Trie *tr = &self->trie;
    int64_t n = 0;
    for (int k = min_n > 1 ? min_n : 1; k <= tr->max_n; k++) n += tr->by_order[k];
    uint32_t *codes = malloc((size_t)(n > 0 ? n : 1) * sizeof(uint32_t));
    int64_t *tf = malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    int64_t *df = malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    PyObject *result = NULL;
    if (!codes || !tf || !df) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t t = min_n <= 1 ? 0 : tr->n_tok, d = 0, m = 0;
    for (;;) {
        while (d < tr->n_deep && tr->depth[d] < min_n) d++;
        int take_token = t < tr->n_tok &&
                         (d >= tr->n_deep || tr->tok_counts[t].ord < tr->deep_counts[d].ord);
        if (take_token) {
            codes[m] = (uint32_t)t;
            tf[m] = tr->tok_counts[t].tf;
            df[m] = tr->tok_counts[t].df;
            t++;
        } else if (d < tr->n_deep) {
            codes[m] = DEEP | (uint32_t)d;
            tf[m] = tr->deep_counts[d].tf;
            df[m] = tr->deep_counts[d].df;
            d++;
        } else {
            break;
        }
        m++;
    }
    PyObject *a = bytearray_of(codes, m * 4), *b = bytearray_of(tf, m * 8),
             *c = bytearray_of(df, m * 8);
    if (a && b && c) result = PyTuple_Pack(3, a, b, c);
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(c);
done:
    free(codes);
    free(tf);
    free(df);
    return result;
}

/* Drop every n-gram counted at most `threshold` times, keeping the others' order. An n-gram is
 * counted no more often than its prefix or its last token (each of its occurrences is one of
 * theirs, and they were counted from the same text on, or earlier), so what is kept is still a
 * complete trie. Returns how many nodes were dropped. Out of memory leaves the counter as it was. */
static PyObject *Counter_prune(CounterObject *self, PyObject *arg) {
    long long threshold = PyLong_AsLongLong(arg);
    if (threshold == -1 && PyErr_Occurred()) return NULL;
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "the Counter was not built");
        return NULL;
    }
    Trie *tr = &self->trie;
    int64_t *tok_map = malloc((size_t)(tr->n_tok > 0 ? tr->n_tok : 1) * sizeof(int64_t));
    int64_t *deep_map = malloc((size_t)(tr->n_deep > 0 ? tr->n_deep : 1) * sizeof(int64_t));
    uint32_t *chars = NULL;
    Table short_tokens = {0}, tokens = {0}, edges = {0};
    if (!tok_map || !deep_map) goto nomem;
    /* Decide first, changing nothing: the new index of every survivor, -1 for the others. */
    int64_t nt = 0, nd = 0, n_chars = 0;
    for (int64_t t = 0; t < tr->n_tok; t++) {
        tok_map[t] = tr->tok_counts[t].tf > threshold ? nt++ : -1;
        if (tok_map[t] >= 0) n_chars += tr->tok_len[t];
    }
    for (int64_t d = 0; d < tr->n_deep; d++) {  /* a parent comes before its children */
        uint32_t p = tr->parent[d];
        int64_t parent = p & DEEP ? deep_map[p & ~DEEP] : tok_map[p];
        int keep = tr->deep_counts[d].tf > threshold && parent >= 0 && tok_map[tr->last[d]] >= 0;
        deep_map[d] = keep ? nd++ : -1;
    }
    chars = malloc((size_t)(n_chars > 0 ? n_chars : 1) * sizeof(uint32_t));
    if (!chars || table_init(&short_tokens, nt, 2) < 0 || table_init(&tokens, nt, 2) < 0 ||
        table_init(&edges, nd, 2) < 0)
        goto nomem;
    /* Compact in place: a survivor only moves towards the front. */
    int64_t pos = 0;
    for (int64_t t = 0; t < tr->n_tok; t++) {
        int64_t k = tok_map[t];
        if (k < 0) continue;
        int32_t len = tr->tok_len[t];
        memcpy(chars + pos, tr->chars + tr->tok_start[t], (size_t)len * sizeof(uint32_t));
        KeyBuilder kb;
        key_start(&kb);
        for (int32_t j = 0; j < len; j++) key_add(&kb, chars[pos + j]);
        Table *table = kb.is_short ? &short_tokens : &tokens;
        uint64_t key = key_end(&kb);
        uint64_t i = mix64(key) & table->mask;
        while (table->slots[i].idx != EMPTY) i = (i + 1) & table->mask;
        table->slots[i].key = key;
        table->slots[i].idx = (int32_t)k;
        table->used++;
        tr->tok_start[k] = pos;
        tr->tok_len[k] = len;
        tr->tok_counts[k] = tr->tok_counts[t];
        pos += len;
    }
    memset(tr->by_order, 0, sizeof(tr->by_order));
    tr->by_order[1] = nt;
    for (int64_t d = 0; d < tr->n_deep; d++) {
        int64_t k = deep_map[d];
        if (k < 0) continue;
        uint32_t p = tr->parent[d];
        uint32_t parent = p & DEEP ? DEEP | (uint32_t)deep_map[p & ~DEEP] : (uint32_t)tok_map[p];
        int32_t last = (int32_t)tok_map[tr->last[d]];
        uint64_t key = ((uint64_t)parent << 32) | (uint32_t)last;
        Slot *s = key_slot(&edges, key);
        s->key = key;
        s->idx = (int32_t)k;
        edges.used++;
        tr->parent[k] = parent;
        tr->last[k] = last;
        tr->depth[k] = tr->depth[d];
        tr->deep_counts[k] = tr->deep_counts[d];
        tr->by_order[tr->depth[k]]++;
    }
    int64_t dropped = (tr->n_tok - nt) + (tr->n_deep - nd);
    free(tr->chars);
    tr->chars = chars;
    tr->n_chars = tr->cap_chars = n_chars;
    tr->n_tok = nt;
    tr->n_deep = nd;
    table_free(&tr->short_tokens);
    table_free(&tr->tokens);
    table_free(&tr->edges);
    tr->short_tokens = short_tokens;
    tr->tokens = tokens;
    tr->edges = edges;
    free(tok_map);
    free(deep_map);
    return PyLong_FromLongLong(dropped);
nomem:
    free(tok_map);
    free(deep_map);
    free(chars);
    table_free(&short_tokens);
    table_free(&tokens);
    table_free(&edges);
    return PyErr_NoMemory();
}

static PyObject *node_string(const Trie *tr, uint32_t code) {
    int32_t chain[MAX_ORDER];
    int n = 0;
    while (code & DEEP) {
        int64_t d = code & ~DEEP;
        chain[n++] = tr->last[d];
        code = tr->parent[d];
    }
    chain[n++] = (int32_t)code;
    Py_ssize_t len = n - 1;
    Py_UCS4 maxchar = ' ';
    for (int k = 0; k < n; k++) {
        const uint32_t *c = tr->chars + tr->tok_start[chain[k]];
        len += tr->tok_len[chain[k]];
        for (int32_t j = 0; j < tr->tok_len[chain[k]]; j++)
            if (c[j] > maxchar) maxchar = c[j];
    }
    PyObject *s = PyUnicode_New(len, maxchar);
    if (!s) return NULL;
    int kind = PyUnicode_KIND(s);
    void *data = PyUnicode_DATA(s);
    Py_ssize_t pos = 0;
    for (int k = n - 1; k >= 0; k--) {  /* the chain runs from the last token back */
        const uint32_t *c = tr->chars + tr->tok_start[chain[k]];
        for (int32_t j = 0; j < tr->tok_len[chain[k]]; j++) PyUnicode_WRITE(kind, data, pos++, c[j]);
        if (k > 0) PyUnicode_WRITE(kind, data, pos++, ' ');
    }
    return s;
}

/* strings(codes): the text of each n-gram, its tokens joined by one space (as scikit-learn). */
static PyObject *Counter_strings(CounterObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_CONTIG_RO | PyBUF_FORMAT) < 0) return NULL;
    if (view.itemsize != 4) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "codes must be a contiguous uint32 buffer");
        return NULL;
    }
    const uint32_t *codes = view.buf;
    Py_ssize_t n = view.len / 4;
    const Trie *tr = &self->trie;
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out && i < n; i++) {
        uint32_t c = codes[i];
        int valid = c & DEEP ? (int64_t)(c & ~DEEP) < tr->n_deep : (int64_t)c < tr->n_tok;
        PyObject *s = valid ? node_string(tr, c) : NULL;
        if (!valid) PyErr_Format(PyExc_IndexError, "no n-gram has code %u", c);
        if (!s) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, s);
    }
    PyBuffer_Release(&view);
    return out;
}

static PyObject *Counter_candidate_count(CounterObject *self, PyObject *args) {
    int min_n;
    if (!PyArg_ParseTuple(args, "i", &min_n)) return NULL;
    int64_t n = 0;
    for (int k = min_n > 1 ? min_n : 1; k <= self->trie.max_n; k++) n += self->trie.by_order[k];
    return PyLong_FromLongLong(n);
}

static PyObject *Counter_n_docs(CounterObject *self, void *Py_UNUSED(closure)) {
    return PyLong_FromLongLong(self->trie.n_docs);
}

static PyMethodDef Counter_methods[] = {
    {"add", (PyCFunction)Counter_add, METH_O, "add(texts): count every n-gram of these texts."},
    {"candidates", (PyCFunction)Counter_candidates, METH_VARARGS,
     "candidates(min_n) -> (codes, tf, df): bytearrays of uint32, int64, int64 over the n-grams "
     "of order >= min_n, in order of first occurrence."},
    {"candidate_count", (PyCFunction)Counter_candidate_count, METH_VARARGS,
     "candidate_count(min_n): how many n-grams of order >= min_n are held."},
    {"prune", (PyCFunction)Counter_prune, METH_O,
     "prune(threshold): drop every n-gram counted at most `threshold` times; returns how many "
     "were dropped (n-grams of every order). Codes change."},
    {"strings", (PyCFunction)Counter_strings, METH_O,
     "strings(codes) -> list[str]: the n-grams with these codes (a uint32 buffer)."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef Counter_getset[] = {
    {"n_docs", (getter)Counter_n_docs, NULL, "Texts counted.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyTypeObject CounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sparse_distill.inference._ngrams.Counter",
    .tp_basicsize = sizeof(CounterObject),
    .tp_dealloc = (destructor)Counter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Counter(max_n, lowercase, scripts=False): term and document frequencies of "
              "word n-grams of order 1 .. max_n.",
    .tp_methods = Counter_methods,
    .tp_getset = Counter_getset,
    .tp_init = (initproc)Counter_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------------------------------ */
/* The module */

static int code_point(PyObject *arg, Py_UCS4 *out) {
    long c = PyLong_AsLong(arg);
    if (c == -1 && PyErr_Occurred()) return -1;
    if (c < 0 || c > 0x10FFFF) {
        PyErr_SetString(PyExc_ValueError, "not a code point");
        return -1;
    }
    *out = (Py_UCS4)c;
    return 0;
}

static PyObject *is_word_char(PyObject *Py_UNUSED(module), PyObject *arg) {
    Py_UCS4 c;
    return code_point(arg, &c) < 0 ? NULL : PyBool_FromLong(is_word(c));
}

/* 0: not of an unspaced script; 1: a character that is a token of its own there (a word
 * character); 2: one of its combining marks; 3: another character of those blocks. */
static PyObject *unspaced_class(PyObject *Py_UNUSED(module), PyObject *arg) {
    Py_UCS4 c;
    if (code_point(arg, &c) < 0) return NULL;
    return PyLong_FromLong(!is_unspaced(c) ? 0 : is_word(c) ? 1 : is_unspaced_mark(c) ? 2 : 3);
}

/* unspaced_mark from the interpreter's own Unicode database, which also defines `re`'s \w. */
static int fill_unspaced_marks(void) {
    PyObject *ud = PyImport_ImportModule("unicodedata");
    if (!ud) return -1;
    PyObject *category = PyObject_GetAttrString(ud, "category");
    Py_DECREF(ud);
    if (!category) return -1;
    int status = 0;
    for (Py_UCS4 c = 0x0E00; c < 0x10000 && status == 0; c++) {
        if (!is_unspaced(c) || is_word(c)) continue;
        PyObject *ch = PyUnicode_FromOrdinal((int)c);
        PyObject *cat = ch ? PyObject_CallOneArg(category, ch) : NULL;
        Py_XDECREF(ch);
        if (!cat) {
            status = -1;
            break;
        }
        if (PyUnicode_GET_LENGTH(cat) > 0 && PyUnicode_READ_CHAR(cat, 0) == 'M')
            unspaced_mark[c >> 3] |= (uint8_t)(1u << (c & 7));
        Py_DECREF(cat);
    }
    Py_DECREF(category);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Pooling for the numpy predictor: an EmbeddingBag without torch */

enum { TABLE_F32 = 0, TABLE_F16 = 1, TABLE_BF16 = 2, TABLE_INT8 = 3 };
#define POOL_AHEAD 4

static inline float half_to_float(uint16_t h) {  /* IEEE 754 binary16 -> binary32, exactly */
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* The value of row element k, widened to float. */
static inline float table_value(const char *row, int kind, Py_ssize_t k) {
    if (kind == TABLE_F32) return ((const float *)row)[k];
    if (kind == TABLE_F16) return half_to_float(((const uint16_t *)row)[k]);
    uint32_t bits = (uint32_t)((const uint16_t *)row)[k] << 16;  /* bfloat16 */
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* acc += a * row, and acc += a * bytes + b: `restrict` (a row never overlaps the output) lets
 * the compiler vectorise them; without it they ran at half the speed of torch's EmbeddingBag. */
static inline void add_scaled(float *restrict acc, const float *restrict row, float a,
                              Py_ssize_t dim) {
    for (Py_ssize_t k = 0; k < dim; k++) acc[k] += a * row[k];
}

static inline void add_scaled_bytes(float *restrict acc, const uint8_t *restrict row, float a,
                                    float b, Py_ssize_t dim) {
    for (Py_ssize_t k = 0; k < dim; k++) acc[k] += a * (float)row[k] + b;
}

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t item,
                      const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (view->itemsize != item && !(item == 1)) {
        PyErr_Format(PyExc_ValueError, "%s: expected items of %zd bytes, got %zd", name, item,
                     view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* pool(table, kind, dim, ids, offsets, weights, out, max_pool): out[i] = sum over the ids of
 * text i of weight * table[id] (or their element-wise max; 0 for an empty text). table is C
 * contiguous rows: float32, float16 or bfloat16 (kind 0, 1, 2) of dim values, or int8 (kind 3):
 * dim bytes then a float32 scale and offset (value = byte * scale + offset). ids int32, offsets
 * int64 (n + 1), weights float32, out float32 (n, dim), written. Runs without the GIL. */
static PyObject *pool(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *table_o, *ids_o, *offsets_o, *weights_o, *out_o;
    int kind, max_pool;
    Py_ssize_t dim;
    if (!PyArg_ParseTuple(args, "OinOOOOp", &table_o, &kind, &dim, &ids_o, &offsets_o,
                          &weights_o, &out_o, &max_pool))
        return NULL;
    if (kind < TABLE_F32 || kind > TABLE_INT8 || dim < 1) {
        PyErr_SetString(PyExc_ValueError, "pool: kind must be 0-3 and dim >= 1");
        return NULL;
    }
    Py_ssize_t row_bytes = kind == TABLE_F32 ? 4 * dim : kind == TABLE_INT8 ? dim + 8 : 2 * dim;
    Py_buffer table, ids, offsets, weights, out;
    if (get_buffer(table_o, &table, 0, 1, "table") < 0) return NULL;
    if (get_buffer(ids_o, &ids, 0, 4, "ids") < 0) goto fail_table;
    if (get_buffer(offsets_o, &offsets, 0, 8, "offsets") < 0) goto fail_ids;
    if (get_buffer(weights_o, &weights, 0, 4, "weights") < 0) goto fail_offsets;
    if (get_buffer(out_o, &out, 1, 4, "out") < 0) goto fail_weights;
    Py_ssize_t n = offsets.len / 8 - 1, nnz = ids.len / 4;
    const int64_t rows = (int64_t)(table.len / row_bytes);
    const int32_t *id = ids.buf;
    const int64_t *off = offsets.buf;
    const float *w = weights.buf;
    float *o = out.buf;
    int64_t bad = -1;
    if (n < 0 || out.len < n * dim * 4 || weights.len / 4 < nnz || (n >= 0 && off[n] > nnz)) {
        PyErr_SetString(PyExc_ValueError, "pool: offsets, ids, weights and out disagree");
        goto fail_out;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && bad < 0; i++) {
        float *acc = o + i * dim;
        for (Py_ssize_t k = 0; k < dim; k++) acc[k] = max_pool ? -INFINITY : 0.0f;
        for (int64_t j = off[i]; j < off[i + 1]; j++) {
            if (id[j] < 0 || id[j] >= rows) {
                bad = j;
                break;
            }
            const char *row = (const char *)table.buf + (int64_t)id[j] * row_bytes;
            /* The rows are scattered over a table far larger than the caches: every line of
             * the row POOL_AHEAD ids on is asked for now, to arrive while these are added. */
            if (j + POOL_AHEAD < nnz && id[j + POOL_AHEAD] >= 0 && id[j + POOL_AHEAD] < rows) {
                const char *next = (const char *)table.buf
                                   + (int64_t)id[j + POOL_AHEAD] * row_bytes;
                for (Py_ssize_t line = 0; line < row_bytes; line += 64) PREFETCH(next + line);
            }
            if (kind == TABLE_INT8) {
                float scale, shift;
                memcpy(&scale, row + dim, 4);
                memcpy(&shift, row + dim + 4, 4);
                const uint8_t *q = (const uint8_t *)row;
                if (max_pool) {
                    for (Py_ssize_t k = 0; k < dim; k++) {
                        float v = q[k] * scale + shift;
                        if (v > acc[k]) acc[k] = v;
                    }
                } else {
                    add_scaled_bytes(acc, q, w[j] * scale, w[j] * shift, dim);
                }
            } else if (kind == TABLE_F32 && !max_pool) {
                add_scaled(acc, (const float *)row, w[j], dim);
            } else {
                for (Py_ssize_t k = 0; k < dim; k++) {
                    float v = table_value(row, kind, k);
                    if (max_pool) {
                        if (v > acc[k]) acc[k] = v;
                    } else {
                        acc[k] += w[j] * v;
                    }
                }
            }
        }
        if (max_pool && off[i] == off[i + 1])
            for (Py_ssize_t k = 0; k < dim; k++) acc[k] = 0.0f;
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0) {
        PyErr_Format(PyExc_IndexError, "pool: ids[%lld] = %d is outside the table's %lld rows",
                     (long long)bad, id[bad], (long long)rows);
        goto fail_out;
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&weights);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&table);
    Py_RETURN_NONE;
fail_out:
    PyBuffer_Release(&out);
fail_weights:
    PyBuffer_Release(&weights);
fail_offsets:
    PyBuffer_Release(&offsets);
fail_ids:
    PyBuffer_Release(&ids);
fail_table:
    PyBuffer_Release(&table);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"is_word_char", is_word_char, METH_O,
     "is_word_char(code_point): whether `re`'s \\w matches it (str patterns)."},
    {"unspaced_class", unspaced_class, METH_O,
     "unspaced_class(code_point): 0 outside the unspaced scripts; inside them 1 for a word "
     "character (a token of its own), 2 for a combining mark, 3 for anything else."},
    {"pool", pool, METH_VARARGS,
     "pool(table, kind, dim, ids, offsets, weights, out, max_pool): an EmbeddingBag over a "
     "float32/float16/bfloat16/int8-row-wise table (kind 0-3) into out (n, dim) float32."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ngrams",
    "Word n-grams at compiled speed with CountVectorizer's default token pattern (or the "
    "scripts rule).", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ngrams(void) {
    for (Py_UCS4 c = 0; c < 256; c++) {
        latin1_word[c] = Py_UNICODE_ISALNUM(c) || c == '_';
        if (c < 128) ascii_word[c] = latin1_word[c];
    }
    str_lower = PyObject_GetAttrString((PyObject *)&PyUnicode_Type, "lower");
    if (!str_lower || fill_unspaced_marks() < 0) return NULL;
    if (PyType_Ready(&IndexType) < 0 || PyType_Ready(&CounterType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&IndexType);
    Py_INCREF(&CounterType);
    if (PyModule_AddObject(m, "Index", (PyObject *)&IndexType) < 0 ||
        PyModule_AddObject(m, "Counter", (PyObject *)&CounterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
