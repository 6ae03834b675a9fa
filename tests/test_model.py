"""The inference path on its own: a service that only predicts imports torch, numpy and
safetensors, and none of the training, teacher, config, transformers or scikit-learn code."""

from __future__ import annotations

import subprocess
import sys

# Imports that would fail in the child process: a meta-path finder refuses them.
BLOCKED = ("transformers", "sklearn", "scipy", "datasets", "yaml", "sparse_distill.teacher",
           "sparse_distill.student", "sparse_distill.vocab", "sparse_distill.embed_init",
           "sparse_distill.augment", "sparse_distill.evaluation", "sparse_distill.config",
           "sparse_distill.data", "sparse_distill.rundir", "sparse_distill.benchmark")

CHILD = """
import sys
BLOCKED = {blocked!r}

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError("blocked in this test: " + name)
        return None

sys.meta_path.insert(0, Refuse())
from sparse_distill.model import Student
student = Student.load({directory!r})
print(" ".join(student.predict(["a warm, funny film", "a dull mess", ""])))
print(student.predict_proba(["a warm, funny film"]).shape)
"""


def test_the_inference_api_predicts_with_training_and_teacher_code_blocked(trained_student):
    result = subprocess.run([sys.executable, "-c", CHILD.format(
        blocked=BLOCKED, directory=str(trained_student))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    labels, shape = result.stdout.splitlines()
    assert set(labels.split()) <= {"neg", "pos"} and len(labels.split()) == 3
    assert shape == "(1, 2)"


def test_the_blocker_does_block():
    code = CHILD.split("from sparse_distill.model")[0] + "import sparse_distill.student\n"
    result = subprocess.run([sys.executable, "-c", code.format(blocked=BLOCKED, directory="")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "blocked in this test: " in result.stderr
