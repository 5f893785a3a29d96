"""The fast stepper against the model's own forward: same logits, step after step, for every cell."""

from __future__ import annotations

import pytest
import threadpoolctl
import torch

from charrnn.errors import ConfigError
from charrnn.model import CharRNN, ModelConfig
from charrnn.sampling import layout as layout_module
from charrnn.sampling import threads as sampling_threads_module
from charrnn.sampling.blas import BlasStepper
from charrnn.sampling.steppers import FastStepper, ModuleStepper, make_stepper

N, T, E, H, V = 3, 7, 4, 5, 6  # streams, steps, embed, hidden, vocab


def tiny(cell: str, layers: int) -> CharRNN:
    torch.manual_seed(layers * 10 + len(cell))
    model = CharRNN(ModelConfig(vocab_size=V, cell=cell, num_layers=layers, hidden_size=H, embed_size=E))
    with torch.no_grad():  # biases are zero-ish by default in places; make every term matter
        for param in model.parameters():
            param.normal_(0, 0.7)
    return model.eval()


def reference(model: CharRNN, prime: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Logits [N, T, V] of one full forward over prime + ids: the obviously right answer."""
    with torch.no_grad():
        logits, _ = model(torch.cat([prime, ids], dim=1))
    return logits[:, prime.size(1) - 1 : -1]


@pytest.mark.parametrize("make", [FastStepper, BlasStepper])  # torch (GPU, int8) and numpy (CPU fp32)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("table", [True, False])
def test_fast_steps_match_full_forward(
    make: type, cell: str, layers: int, table: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not table:
        monkeypatch.setattr(layout_module, "MAX_TABLE_BYTES", 0)  # layer 0 multiplies the embedding instead
    model = tiny(cell, layers)
    gen = torch.Generator().manual_seed(1)
    prime = torch.randint(0, V, (N, 4), generator=gen)
    ids = torch.randint(0, V, (N, T), generator=gen)
    expected = reference(model, prime, ids)
    stepper = make(model)
    assert (stepper.table is not None) == table
    with torch.no_grad():
        first, state = model(prime)
        stepper.load_state(state)
        got = [first[:, -1]] + [stepper.step(ids[:, t]) for t in range(T - 1)]
    torch.testing.assert_close(torch.stack(got, dim=1), expected, rtol=1e-5, atol=1e-5)
    # and the state it hands back is the model's, too
    with torch.no_grad():
        _, final = model(torch.cat([prime, ids[:, :-1]], dim=1))
    for mine, theirs in zip(
        stepper.state() if cell == "lstm" else (stepper.state(),),
        final if cell == "lstm" else (final,),
        strict=True,
    ):
        torch.testing.assert_close(torch.as_tensor(mine), theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [FastStepper, BlasStepper, ModuleStepper])
def test_select_keeps_the_chosen_streams(make: type) -> None:
    """Dropping finished streams leaves the others exactly where they were."""
    model = tiny("lstm", 2)
    ids = torch.tensor([1, 2, 3])
    both, alone = make(model), make(model)
    with torch.no_grad():
        _, state = model(torch.tensor([[0], [4], [5]]))
        both.load_state(state)
        _, state_last = model(torch.tensor([[5]]))
        alone.load_state(state_last)
        both.step(ids)
        alone.step(ids[2:])
        both.select(torch.tensor([2]))
        torch.testing.assert_close(both.step(torch.tensor([4])), alone.step(torch.tensor([4])))


def test_engine_names() -> None:
    model = tiny("gru", 1)
    assert isinstance(make_stepper(model, "fast"), BlasStepper)  # on the CPU in fp32
    assert isinstance(make_stepper(model, "fast", "int8"), FastStepper)
    assert isinstance(make_stepper(model, "module"), ModuleStepper)
    with pytest.raises(ConfigError, match="engine"):
        make_stepper(model, "turbo")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_int8_weights_stay_close_to_fp32(cell: str) -> None:
    """int8 changes the numbers a little, not the distribution: small KL per step, same argmax mostly."""
    torch.manual_seed(3)
    model = CharRNN(ModelConfig(vocab_size=V, cell=cell, num_layers=2, hidden_size=64, embed_size=E)).eval()
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, V, (N, 40), generator=gen)
    exact, small = FastStepper(model), FastStepper(model, "int8")
    with torch.no_grad():
        _, state = model(ids[:, :1])
        exact.load_state(state)
        small.load_state(state)
        kl = []
        for t in range(1, ids.size(1)):
            p, q = exact.step(ids[:, t]).log_softmax(-1), small.step(ids[:, t]).log_softmax(-1)
            assert not torch.equal(p, q)  # it really is another computation
            kl.append((p.exp() * (p - q)).sum(-1))
    assert torch.stack(kl).mean() < 1e-5


def test_int8_is_cpu_only_and_fp32_only_for_the_module_engine() -> None:
    model = tiny("lstm", 1)
    with pytest.raises(ConfigError, match="weights"):
        make_stepper(model, "module", "int8")
    with pytest.raises(ConfigError, match="weights"):
        make_stepper(model, "fast", "fp16")


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]


def test_sampling_threads_go_to_the_pool_that_runs_the_products() -> None:
    """numpy's BLAS for the CPU fp32 step, torch's team otherwise; the caller's settings come back."""
    cpu = torch.device("cpu")
    before, blas_before = torch.get_num_threads(), blas_threads()
    assert blas_before  # numpy's wheels bring OpenBLAS, which threadpoolctl can see
    with sampling_threads_module.sampling_threads(2, "fast", "fp32", cpu):
        assert torch.get_num_threads() == 1 and set(blas_threads()) == {2}
    assert torch.get_num_threads() == before and blas_threads() == blas_before
    with sampling_threads_module.sampling_threads(2, "fast", "int8", cpu):
        assert torch.get_num_threads() == 2 and blas_threads() == blas_before  # numpy's BLAS left alone
    with sampling_threads_module.sampling_threads(2, "module", "fp32", cpu):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    zero_threads = sampling_threads_module.sampling_threads(0, "fast", "fp32", cpu)
    with pytest.raises(ConfigError, match="--threads"), zero_threads:
        pass


def test_only_the_cpu_fp32_fast_engine_steps_in_numpy() -> None:
    assert sampling_threads_module.runs_in_numpy("fast", "fp32", torch.device("cpu"))
    for engine, weights, device in [("fast", "fp32", "cuda"), ("fast", "fp32", "mps"), ("fast", "int8", "cpu")]:
        assert not sampling_threads_module.runs_in_numpy(engine, weights, torch.device(device))
    assert not sampling_threads_module.runs_in_numpy("module", "fp32", torch.device("cpu"))
