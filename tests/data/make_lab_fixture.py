"""Make tests/data/lab_small: a small model of the lab's family in the lab's own format.

Written by real Keras 2 (tf_keras): `model.to_json()` → Gmodel.json and
`model.save_weights("Gmodel.h5")`, exactly what the lab's notebook does, with no hhbench
metadata beside it. Same depth, kernel, stride, window and context as the lab's model,
only 4 filters, so the files stay small. Run from the repository root:

    python tests/data/make_lab_fixture.py
"""

from pathlib import Path

import tf_keras

from hhbench.cnn.architecture import Architecture, build_model

OUT = Path(__file__).parent / "lab_small"

if __name__ == "__main__":
    tf_keras.utils.set_random_seed(7)
    model = build_model(Architecture(filters=4))
    OUT.mkdir(exist_ok=True)
    (OUT / "Gmodel.json").write_text(model.to_json())
    model.save_weights(str(OUT / "Gmodel.h5"))
    print(f"wrote {OUT}: {model.count_params()} parameters")
