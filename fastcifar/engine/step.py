"""The training step, written as a function over static buffers.

StepBuffers holds everything one step reads or writes apart from the model and the
optimizer: the input batch, the lr (a device tensor the optimizer reads) and the metric
accumulators. TrainStep is forward + loss + backward + update over those buffers, with no
host reads and no Python-side values that change between steps, so it can be:

  - run eagerly (CPU, --no-graph, fp16 + GradScaler):   EagerRunner
  - recorded once in a CUDA graph and replayed:        GraphRunner

Both runners copy each loader batch into the static input buffers first; the loop
writes the scheduled lr into `buffers.lr` before each step and reads `buffers.metrics`
once per epoch. The copy (3 MB at 512 bf16 images) lets the native loader augment the
next batch on its side stream meanwhile: measured on one H200 (2026-11-29, `fastcifar
bench --suite e2e`), loader + step ran at 0.997-0.999 of the step alone.

CPU tests run TrainStep eagerly over the same buffers, which proves the buffer protocol;
the CUDA suite (tests/test_engine_cuda.py) proves the capture.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# metrics layout: one float64 vector so that reading or all-reducing it is one operation
LOSS_SUM, CORRECT, SEEN = 0, 1, 2
# The torch dtype of each compute dtype name a config may hold.
TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy for class indices (int64 [B], smoothed here) or soft targets
    (float [B, K], already smoothed by the loader, so never smoothed again)."""
    logits = logits.float()
    if targets.is_floating_point():
        return F.cross_entropy(logits, targets.float())
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def count_correct(logits: Tensor, targets: Tensor) -> Tensor:
    """Number of argmax hits; soft targets count their argmax as the label."""
    labels = targets.argmax(dim=1) if targets.is_floating_point() else targets
    return (logits.argmax(dim=1) == labels).sum()


def autocast_for(device: torch.device | str, dtype: str):
    """The autocast context of a compute dtype ("bf16", "fp16", "fp32").

    cache_enabled=False: autocast's weight-cast cache must not be used inside a captured
    region (the cached copies would be freed after capture); in eager mode the cache
    saves little for CIFAR-sized nets, so one setting serves both.
    """
    device_type = torch.device(device).type
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=TORCH_DTYPES[dtype], cache_enabled=False)


@dataclass
class StepBuffers:
    """Static tensors a step reads and writes; their addresses never change."""

    images: Tensor  # [B, 3, 32, 32], layout and dtype as the loader yields them
    targets: Tensor  # int64 [B] or float32 [B, K]
    lr: Tensor  # float32, 0-dim (shape []), read on the device by the optimizer
    metrics: Tensor  # float64 [3]: loss sum, correct count, samples seen

    @classmethod
    def allocate(cls, batch_size: int, num_classes: int, *, soft_targets: bool, lr: Tensor,
                 dtype: torch.dtype = torch.float32, channels_last: bool = True) -> "StepBuffers":
        """Buffers for the loader protocol's batches: images [B,3,32,32] in the compute
        dtype, targets int64 [B] or float32 [B, K] soft targets; on lr's device."""
        device = lr.device
        layout = torch.channels_last if channels_last else torch.contiguous_format
        images = torch.empty(batch_size, 3, 32, 32, dtype=dtype, device=device,
                             memory_format=layout).zero_()
        if soft_targets:
            targets = torch.zeros(batch_size, num_classes, dtype=torch.float32, device=device)
        else:
            targets = torch.zeros(batch_size, dtype=torch.int64, device=device)
        return cls(images=images, targets=targets, lr=lr,
                   metrics=torch.zeros(3, dtype=torch.float64, device=device))

    @classmethod
    def like(cls, images: Tensor, targets: Tensor, lr: Tensor) -> "StepBuffers":
        """Buffers shaped like one loader batch (zeros_like keeps channels_last)."""
        return cls(
            images=torch.zeros_like(images),
            targets=torch.zeros_like(targets),
            lr=lr,
            metrics=torch.zeros(3, dtype=torch.float64, device=images.device),
        )

    def load(self, images: Tensor, targets: Tensor) -> None:
        """Copy a batch in; a loader that already wrote into these buffers costs nothing."""
        if images.shape != self.images.shape or targets.shape != self.targets.shape:
            raise ValueError(
                f"a captured step needs batches of one shape: got {tuple(images.shape)}/"
                f"{tuple(targets.shape)}, expected {tuple(self.images.shape)}/"
                f"{tuple(self.targets.shape)} (train loaders must drop the last partial batch)"
            )
        if images.data_ptr() != self.images.data_ptr():
            self.images.copy_(images, non_blocking=True)
        if targets.data_ptr() != self.targets.data_ptr():
            self.targets.copy_(targets, non_blocking=True)

    def reset_metrics(self) -> None:
        self.metrics.zero_()


class TrainStep:
    """forward, loss, backward and SGD update over `buffers`; nothing here reads the host.

    `model` is what the step calls (possibly DDP- or compile-wrapped); `optimizer` reads
    `buffers.lr`. With a GradScaler (fp16) the step syncs on found-inf, so it is eager only.
    """

    def __init__(self, model, optimizer, buffers: StepBuffers, *, label_smoothing: float = 0.0,
                 dtype: str = "fp32", grad_scaler=None):
        self.model = model
        self.optimizer = optimizer
        self.buffers = buffers
        self.label_smoothing = label_smoothing
        self.dtype = dtype
        self.grad_scaler = grad_scaler
        self._batch_size = buffers.images.shape[0]

    def __call__(self) -> None:
        b = self.buffers
        # set_to_none: backward writes fresh gradients instead of adding to old ones
        # (inside a capture they are allocated once from the graph's pool).
        self.optimizer.zero_grad(set_to_none=True)
        with autocast_for(b.images.device, self.dtype):
            logits = self.model(b.images)
        loss = cross_entropy(logits, b.targets, self.label_smoothing)
        with torch.no_grad():
            hits = count_correct(logits, b.targets)
            b.metrics[:2].add_(torch.stack((loss.detach().double() * self._batch_size,
                                            hits.double())))
            b.metrics[SEEN].add_(self._batch_size)
        if self.grad_scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()


class EagerRunner:
    """Runs the step as ordinary PyTorch code, batch by batch."""

    captured = False
    warmup_calls = 0  # no runner warm-up (a compiled model compiles in the caller's warm-up)

    def __init__(self, step: TrainStep):
        self.step = step

    def __call__(self, images: Tensor, targets: Tensor) -> None:
        self.step.buffers.load(images, targets)
        self.step()

    def close(self) -> None:
        """Nothing to release (the graph runner's counterpart)."""


class GraphRunner:
    """Records the step in a CUDA graph once, then replays it for every batch.

    The first `warmup_steps` batches run eagerly on a side stream (real training steps:
    they initialise cuDNN/cuBLAS workspaces, autocast, the allocator, a compiled model
    and DDP's buckets, and BN running statistics keep updating through them); the next
    batch is captured and then replayed, so every batch trains exactly once. DDP wants at
    least 11 eager iterations before a full-backward capture (torch CUDA-graph notes).

    capture_error_mode="thread_local" lets loader threads (DALI, prefetchers) keep
    issuing CUDA work while this thread captures.

    `stream` is the trainer's one side stream: DDP must be built, warmed up and captured
    on the same stream (its AccumulateGrad nodes keep the stream they were created on;
    a mismatch is a known cause of cudaErrorStreamCaptureInvalidated), so build.py
    creates it, builds DDP on it and hands it over. Without one, the runner makes its own.

    close() releases the graph. A graph that captured NCCL collectives keeps their
    communicator referenced, and NCCL's shutdown (graceful or abort) waits for every such
    graph to go: close() must run before the process group is destroyed, on every way out.
    """

    captured = False

    def __init__(self, step: TrainStep, *, warmup_steps: int = 3,
                 capture_error_mode: str = "thread_local", stream=None):
        if step.grad_scaler is not None:
            raise ValueError("GradScaler reads found-inf on the host; it cannot be captured")
        self.step = step
        self.warmup_steps = warmup_steps
        self.capture_error_mode = capture_error_mode
        self.graph = None
        self._eager_steps = 0
        self._side_stream = stream

    @property
    def warmup_calls(self) -> int:
        """Calls before the steady state: the eager warm-ups, then the capture."""
        return self.warmup_steps + 1

    def __call__(self, images: Tensor, targets: Tensor) -> None:
        self.step.buffers.load(images, targets)
        if self.graph is None:
            if self._eager_steps < self.warmup_steps:
                self._run_on_side_stream()
                self._eager_steps += 1
                return
            self._capture()
        self.graph.replay()

    def close(self) -> None:
        """Release the captured graph (idempotent)."""
        graph, self.graph = self.graph, None
        if graph is not None:
            graph.reset()

    def _stream(self):
        if self._side_stream is None:
            self._side_stream = torch.cuda.Stream()
        return self._side_stream

    def _run_on_side_stream(self) -> None:
        side, main = self._stream(), torch.cuda.current_stream()
        side.wait_stream(main)
        with torch.cuda.stream(side):
            self.step()
        main.wait_stream(side)

    def _capture(self) -> None:
        # Capture records kernels without running them: this batch's update happens at
        # the replay that follows, and the metrics are not touched twice.
        side, main = self._stream(), torch.cuda.current_stream()
        side.wait_stream(main)  # the batch just loaded on the main stream
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side, capture_error_mode=self.capture_error_mode):
            self.step()
        self.graph = graph
        self.captured = True


def make_runner(step: TrainStep, *, graph: bool, distributed: bool = False, stream=None):
    """EagerRunner, or a GraphRunner capturing on `stream` (see GraphRunner)."""
    if not graph:
        return EagerRunner(step)
    return GraphRunner(step, warmup_steps=11 if distributed else 3, stream=stream)
