"""The Triton kernel against the torch reference.

On CPU tensors the kernel runs in Triton's interpreter (tiny batches); the same source is
also compiled for sm_90 without a GPU, which catches what the interpreter lets through
(types, constexpr branches). On a CUDA machine it runs on the GPU and inside a CUDA graph.
"""

import pytest
import torch

from fastcifar.augment import (
    AugmentConfig,
    augment,
    augment_reference,
    identity_params,
    sample_params,
)
from tests.helpers import capture_graph, ptx_for_sm90, redraw_into, triton_in_fresh_interpreter

triton = pytest.importorskip("triton")

CONFIGS = {
    "crop_flip": AugmentConfig.for_dataset("cifar10"),
    "reflect_cutout": AugmentConfig.for_dataset("cifar10", pad_mode="reflect", cutout=16),
    "erasing": AugmentConfig.for_dataset("cifar100", padding=2, erase_prob=1.0),
    "mix_both_smooth": AugmentConfig.for_dataset("cifar100", erase_prob=0.5, mixup_alpha=1.0,
                                                 cutmix_alpha=1.0, label_smoothing=0.1),
    "mixup_reflect": AugmentConfig.for_dataset("cifar10", pad_mode="reflect", mixup_alpha=0.4),
    "smoothing": AugmentConfig.for_dataset("cifar10", label_smoothing=0.2),
}
# One ulp of the target type: Triton's interpreter rounds to bf16 its own way (the GPU
# uses round-to-nearest-even like torch), so half outputs get that much slack.
HALF_RTOL = {torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}


def make_case(config, num_images, batch_size, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (num_images, 32, 32, 3), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, config.num_classes, (num_images,), generator=g)
    indices = None if batch_size is None else torch.randint(0, num_images, (batch_size,),
                                                            generator=g)
    params = sample_params(config, num_images if indices is None else batch_size, g, "cpu")
    moved = (images.to(device), labels.to(device),
             None if indices is None else indices.to(device), params.to(device))
    return moved


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("num_images,batch_size", [(6, 3), (2, None), (4, 1)])
def test_interpreter_matches_reference_exactly(name, num_images, batch_size):
    config = CONFIGS[name]
    images, labels, indices, params = make_case(config, num_images, batch_size)
    before = images.clone()
    expected = augment_reference(images, labels, params, config, indices=indices)
    actual = augment(images, labels, params, config, indices=indices, impl="triton")
    assert torch.equal(actual[0], expected[0])
    assert actual[0].is_contiguous(memory_format=torch.channels_last)
    assert actual[1].dtype == expected[1].dtype and torch.equal(actual[1], expected[1])
    assert torch.equal(images, before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_interpreter_half_outputs_into_given_buffer(dtype):
    config = CONFIGS["mix_both_smooth"]
    images, labels, indices, params = make_case(config, 5, 2)
    out = torch.empty(2, 3, 32, 32, dtype=dtype).to(memory_format=torch.channels_last)
    out_targets = torch.empty(2, 100)
    result = augment(images, labels, params, config, indices=indices, out=out,
                     out_targets=out_targets, dtype=dtype, impl="triton")
    assert result[0] is out and result[1] is out_targets
    expected = augment_reference(images, labels, params, config, indices=indices, dtype=dtype)
    torch.testing.assert_close(out.float(), expected[0].float(), rtol=HALF_RTOL[dtype],
                               atol=1e-6)
    assert torch.equal(out_targets, expected[1])


def test_interpreter_empty_batch():
    config = CONFIGS["crop_flip"]
    images, labels, _, _ = make_case(config, 2, None)
    out, targets = augment(images, labels, identity_params(0), config,
                           indices=torch.zeros(0, dtype=torch.int64), impl="triton")
    assert out.shape == (0, 3, 32, 32) and targets.shape == (0,)


@pytest.mark.slow
def test_interpreter_when_triton_interpret_is_set_before_import():
    """The documented way to run Triton on CPU: TRITON_INTERPRET=1 in a fresh process."""
    config = "AugmentConfig.for_dataset('cifar10', cutout=8, mixup_alpha=1.0)"
    assert triton_in_fresh_interpreter(config, 3, timeout=300) == "True"


_POINTER_TYPES = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}


@pytest.mark.parametrize("name,has_indices,dtype", [
    ("crop_flip", True, torch.float32),
    ("mix_both_smooth", False, torch.bfloat16),
    ("reflect_cutout", True, torch.float16),
])
def test_compiles_for_sm90_without_fma(name, has_indices, dtype):
    """Full compile to a cubin for an H100/H200 on any machine (ptxas ships with triton)."""
    from triton.compiler import ASTSource

    from fastcifar.augment.triton_gpu import _kernel, kernel_constexprs

    config = CONFIGS[name]
    constexprs = kernel_constexprs(config, has_indices)
    signature = {
        "images": "*u8", "indices": "*i64" if has_indices else "*u8", "labels": "*i64",
        "shift": "*i32", "flip": "*i32", "erase_box": "*i32", "partner": "*i64",
        "mix_weight": "*fp32", "mix_box": "*i32", "target_weight": "*fp32", "lut": "*fp32",
        "out": _POINTER_TYPES[dtype], "targets": "*fp32" if config.soft_targets else "*i64",
        "keep": "fp32", "fill": "fp32", "num_classes": "i32",
        **{name: "constexpr" for name in constexprs},
    }
    source = ASTSource(_kernel(False), signature, constexprs=constexprs)
    ptx = ptx_for_sm90(source)
    assert "fma." not in ptx  # contraction off: GPU results round like the reference
    if dtype == torch.bfloat16:
        assert "cvt.rn.bf16.f32" in ptx  # round-to-nearest-even, as torch's .to()


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_reference(name, dtype):
    config = CONFIGS[name]
    images, labels, indices, params = make_case(config, 1000, 257, device="cuda")
    expected = augment_reference(images, labels, params, config, indices=indices, dtype=dtype)
    actual = augment(images, labels, params, config, indices=indices, dtype=dtype)  # auto
    torch.cuda.synchronize()
    # Fusion is off and bf16 rounding is RNE on both sides: expected bit-identical; the
    # tolerance only guards mixup against a 1-ulp difference if a backend changes that.
    torch.testing.assert_close(actual[0], expected[0], rtol=1e-6, atol=1e-6)
    if not config.mixing:
        assert torch.equal(actual[0], expected[0])
    torch.testing.assert_close(actual[1], expected[1], rtol=0, atol=1e-6)


@pytest.mark.cuda
@requires_cuda
def test_cuda_graph_capture_replays_new_params():
    """Launch with preallocated buffers inside a CUDA graph; new params take effect."""
    config = CONFIGS["mix_both_smooth"]
    images, labels, indices, params = make_case(config, 1000, 128, device="cuda")
    out = torch.empty(128, 3, 32, 32, device="cuda").to(memory_format=torch.channels_last)
    out_targets = torch.empty(128, 100, device="cuda")

    def step():
        augment(images, labels, params, config, indices=indices, out=out,
                out_targets=out_targets)

    graph = capture_graph(step)
    g = torch.Generator(device="cuda").manual_seed(5)
    for _ in range(2):
        redraw_into(params, config, g)
        indices.copy_(torch.randint(0, 1000, (128,), device="cuda", generator=g))
        graph.replay()
        expected = augment_reference(images, labels, params, config, indices=indices)
        torch.testing.assert_close(out, expected[0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(out_targets, expected[1], rtol=0, atol=1e-6)
