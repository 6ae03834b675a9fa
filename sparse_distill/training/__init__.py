"""What makes a student: the config's schema, the data readers and the pool, augmentation, the
teacher (Hugging Face loading, fine-tuning, labelling), the n-gram vocabulary's counting,
teacher-initialised embeddings, the losses, the training corpus and the training loop. Built on
`sparse_distill.inference`; the stages put it together."""
