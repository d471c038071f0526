"""Using a finished run: load its model, evaluate it, classify images, export it.

    import fastcifar
    model = fastcifar.load_model("runs/resnet20-cifar10-20261201-120000")  # nn.Module, eval mode
    model.class_names, model.normalization, model.model_name

Modules, one job each: model (a run directory -> its trained model and settings), inference
(batches through the run's own loader path -> logits), metrics (accuracy, loss, per-class,
confusion matrix, calibration), testsets (test sets from files: npy pairs, CIFAR-format
archives, CIFAR-10-C/100-C folders), evaluation (`fastcifar eval`), images and predict
(`fastcifar predict`), export and exported (`fastcifar export` and reading its files back),
report (text tables), plot (confusion matrix and reliability diagram).

This package file imports nothing, so `fastcifar.load_model` and the CLI stay cheap until
used; it holds the one fact the CLI needs before that: the export formats.
"""

EXPORT_FORMATS = ("torchscript", "onnx", "safetensors")
