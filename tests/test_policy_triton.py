"""Policies inside the fused Triton kernel: the interpreter on CPU (tiny batches), a full
compile for sm_90 without a GPU, and the GPU itself (with a CUDA-graph capture) when there
is one; all equal the torch reference bit for bit."""

import pytest
import torch

from fastcifar.augment import AugmentConfig, augment, augment_reference, sample_params
from fastcifar.augment.policy_space import SPACES
from tests.helpers import (
    EXTRAS,
    assert_same,
    capture_graph,
    entry_per_sample,
    make_policy_images,
    policy_case,
    ptx_for_sm90,
    redraw_into,
    triton_in_fresh_interpreter,
)

triton = pytest.importorskip("triton")
# One entry of each op kind (both quarter turns, and a shear with exact rounding ties).
KIND_CASES = [("trivialaugment", SPACES["trivialaugment"].entry(op, level, negated))
              for op, level, negated in (
    ("ShearX", 30, True), ("Rotate", 20, False), ("Rotate", 17, True),
    ("TranslateX", 22, False), ("TranslateY", 25, True), ("Brightness", 3, True),
    ("Color", 30, True), ("Contrast", 12, False), ("Sharpness", 29, True), ("Posterize", 30, False),
    ("Solarize", 9, False), ("AutoContrast", 0, False), ("Equalize", 0, False))] + [
    ("autoaugment", SPACES["autoaugment"].entry("Invert", 0)),
    ("autoaugment", SPACES["autoaugment"].entry("ShearY", 6, negated=True)),
]


def test_triton_interpreter_equals_the_reference():
    """The fast check: 3 samples, 3 steps each (value maps, warps, ops on whole pixels
    and on neighbourhoods), with mixing and erasing."""
    config = AugmentConfig.for_dataset("cifar10", augment_policy="randaugment", ra_n=3,
                                       ra_m=20, erase_prob=1.0, mixup_alpha=1.0)
    space = SPACES["randaugment"]
    images, labels = make_policy_images(6, seed=6)
    params = sample_params(config, 3, torch.Generator().manual_seed(7), "cpu")
    # ShearX at bin 20 (0.2) puts 186 output pixels exactly half-way between two sources.
    params.policy[:] = torch.tensor([[space.entry(o, 20) for o in ops] for ops in (
        ("Solarize", "ShearX", "Equalize"), ("Color", "Sharpness", "Posterize"),
        ("AutoContrast", "Rotate", "Contrast"))], dtype=torch.int32)
    indices = torch.tensor([5, 0, 3])
    expected = augment_reference(images, labels, params, config, indices=indices)
    assert_same(augment(images, labels, params, config, indices=indices, impl="triton"),
                expected)


@pytest.mark.slow
@pytest.mark.parametrize("policy,entry", KIND_CASES)
def test_triton_interpreter_runs_each_op_kind_as_the_reference_does(policy, entry):
    config = AugmentConfig.for_dataset("cifar10", augment_policy=policy, cutout=10)
    images, labels, params = entry_per_sample(config, [entry, entry], seed=entry)
    if policy == "autoaugment":
        params.policy[:, 1] = 0
    expected = augment_reference(images, labels, params, config)
    assert_same(augment(images, labels, params, config, impl="triton"), expected)


@pytest.mark.slow
def test_triton_with_interpret_set_before_import():
    """The documented way to run Triton on CPU: TRITON_INTERPRET=1 in a fresh process."""
    config = "AugmentConfig.for_dataset('cifar10', augment_policy='trivialaugment')"
    assert triton_in_fresh_interpreter(config, 2, timeout=600) == "True"


@pytest.mark.slow
@pytest.mark.parametrize("mixing", [False, True])
def test_triton_policy_kernel_compiles_for_sm90(mixing):
    """Full compile to a cubin for an H100/H200 on any machine (ptxas ships with triton):
    no FMA contraction, IEEE division, round-to-nearest conversions."""
    from triton.compiler import ASTSource

    from fastcifar.augment.triton_gpu import _kernel, kernel_constexprs

    config = AugmentConfig.for_dataset("cifar10", augment_policy="trivialaugment",
                                       mixup_alpha=float(mixing), label_smoothing=0.1)
    constexprs = kernel_constexprs(config, has_indices=True)
    del constexprs["BLOCK"]
    pointers = dict(images="*u8", indices="*i64", labels="*i64", shift="*i32", flip="*i32",
                    erase_box="*i32", partner="*i64", mix_weight="*fp32", mix_box="*i32",
                    target_weight="*fp32", lut="*fp32", policy="*i32", kinds="*i32",
                    coefficients="*fp32", out="*bf16", targets="*fp32")
    signature = {**pointers, "keep": "fp32", "fill": "fp32", "num_classes": "i32",
                 "steps": "i32", **{name: "constexpr" for name in constexprs}}
    source = ASTSource(_kernel(False, policy=True), signature, constexprs=constexprs)
    ptx = ptx_for_sm90(source)
    assert "fma.rn.f32" not in ptx and "div.rn.f32" in ptx and "div.full" not in ptx
    assert "cvt.rn.bf16.f32" in ptx and "cvt.rn.f32.f64" in ptx


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("policy", list(SPACES))
@pytest.mark.parametrize("extra", list(EXTRAS))
def test_cuda_equals_the_reference(policy, extra):
    config, images, labels, indices, params = policy_case(policy, extra, 1000, 513, seed=8)
    expected = augment_reference(images, labels, params, config, indices=indices)
    got = augment(images.cuda(), labels.cuda(), params.to("cuda"), config,
                  indices=indices.cuda())  # auto: Triton
    torch.cuda.synchronize()
    assert torch.equal(got[0].cpu(), expected[0])
    torch.testing.assert_close(got[1].cpu(), expected[1], rtol=0, atol=1e-6)


@pytest.mark.cuda
@requires_cuda
def test_cuda_graph_capture_replays_new_policy_draws():
    """Launch with preallocated buffers inside a CUDA graph; new draws take effect."""
    config = AugmentConfig.for_dataset("cifar10", augment_policy="randaugment",
                                       mixup_alpha=1.0, cutmix_alpha=1.0,
                                       label_smoothing=0.1)
    images, labels = (t.cuda() for t in make_policy_images(1000, seed=10))
    g = torch.Generator(device="cuda").manual_seed(11)
    indices = torch.randint(0, 1000, (256,), device="cuda", generator=g)
    params = sample_params(config, 256, g, "cuda")
    out = torch.empty(256, 3, 32, 32, device="cuda").to(memory_format=torch.channels_last)
    out_targets = torch.empty(256, 10, device="cuda")

    def step():
        augment(images, labels, params, config, indices=indices, out=out,
                out_targets=out_targets)

    graph = capture_graph(step)
    for _ in range(2):
        redraw_into(params, config, g)
        graph.replay()
        expected = augment_reference(images.cpu(), labels.cpu(), params.to("cpu"), config,
                                     indices=indices.cpu())
        assert torch.equal(out.cpu(), expected[0])
        torch.testing.assert_close(out_targets.cpu(), expected[1], rtol=0, atol=1e-6)
