"""Settings defined once (fenchel_cvx.settings): each field checks itself, the groups compose, nothing is copied.

The command-line side of the same contract (one flag per field, same defaults) is in test_cli.py.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from fenchel_cvx import settings as S
from fenchel_cvx.errors import ChoiceError, FenchelError, ShapeError, ValueRangeError


def test_every_field_has_a_spec_with_help():
    for cls in (S.BCDSettings, S.BackpropSettings, S.DataSettings, S.NetworkSettings):
        for f in dataclasses.fields(cls):
            spec = f.metadata.get("spec")
            assert spec is not None and spec.help, (cls.__name__, f.name)
            # the default passes the field's own check
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            spec.check(f.name, default)


def test_setting_names_are_unique_across_the_groups():
    names = [f.name for cls in (S.DataSettings, S.NetworkSettings, S.TrainerSettings, S.BCDOptions,
                                S.BackpropOptions) for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_trainer_settings_are_compositions_not_copies():
    """BCDSettings = TrainerSettings + BCDOptions: every field is defined in exactly one group."""
    def own(cls):
        return {f.name for f in dataclasses.fields(cls)}
    assert own(S.BCDSettings) == own(S.TrainerSettings) | own(S.BCDOptions)
    assert own(S.BackpropSettings) == own(S.TrainerSettings) | own(S.BackpropOptions) | {"optimizer"}
    for name in own(S.TrainerSettings):
        a = next(f for f in dataclasses.fields(S.BCDSettings) if f.name == name)
        b = next(f for f in dataclasses.fields(S.BackpropSettings) if f.name == name)
        assert a.metadata["spec"] is b.metadata["spec"] and a.default == b.default, name


@pytest.mark.parametrize("kw,err,needle", [
    ({"batch_size": 0}, ValueRangeError, "batch_size"), ({"batch_size": 2.5}, ValueRangeError, "batch_size"),
    ({"batch_size": True}, ValueRangeError, "batch_size"), ({"epochs": -1}, ValueRangeError, "epochs"),
    ({"lam": 0.0}, ValueRangeError, "lam"), ({"lam": [0.1, -1.0]}, ValueRangeError, r"lam\[1\]"),
    ({"lam": "big"}, ValueRangeError, "lam"), ({"rho": float("nan")}, ValueRangeError, "rho"),
    ({"gamma": -0.1}, ValueRangeError, "gamma"), ({"dtype": "float16"}, ChoiceError, "dtype"),
    ({"backend": "jax"}, ChoiceError, "backend"), ({"curvature": "exact"}, ChoiceError, "curvature"),
    ({"seed": -1}, ValueRangeError, "seed"), ({"threads": 0}, ValueRangeError, "threads"),
    ({"curvature_rank": 0}, ValueRangeError, "curvature_rank"), ({"record_blocks": 1}, ValueRangeError, "record"),
    ({"curvature": "running", "batch_size": None}, ValueRangeError, "inexact"),
    ({"curvature_line_search": True, "curvature_relax": 2.0}, ValueRangeError, "curvature_relax"),
    ({"backend": "cvx", "inexact": True}, ValueRangeError, "inexact"),
    ({"inexact_x_float32": True}, ValueRangeError, "inexact_x_float32"),
    ({"inexact_x_float32": True, "curvature": "running"}, ValueRangeError, "inexact_x_float32"),
    ({"inexact_x_float32": True, "curvature": "running", "inexact_x_iters": 5, "inexact_x_certify": True},
     ValueRangeError, "inexact_x_float32"),
])
def test_bad_values_fail_where_they_are_written(kw, err, needle):
    with pytest.raises(err, match=needle) as info:
        S.BCDSettings(**kw)
    assert "expected" in str(info.value) or "set" in str(info.value) or "use" in str(info.value)


def test_backprop_and_data_rules():
    with pytest.raises(ValueRangeError, match="momentum"):
        S.BackpropSettings(momentum=1.0)
    with pytest.raises(ChoiceError, match="optimizer"):
        S.BackpropSettings(optimizer="rmsprop")
    with pytest.raises(ValueRangeError, match="data_dir"):
        S.DataSettings(dataset="mnist-small", data_dir="/somewhere")
    with pytest.raises(ShapeError, match="arch"):
        S.NetworkSettings(arch=(784,))
    with pytest.raises(ShapeError, match="784-...-10"):
        S.NetworkSettings(arch=(20, 5, 10)).sizes_for(784, 10)
    assert S.NetworkSettings().sizes_for(784, 10) == [784, 300, 10]


def test_settings_are_frozen_and_replace_checks():
    s = S.BCDSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.epochs = 5  # type: ignore[misc]
    assert s.replace(epochs=5).epochs == 5
    with pytest.raises(ValueRangeError):
        s.replace(epochs=-5)


def test_numpy_numbers_and_sequences_are_accepted_and_canonical():
    s = S.BCDSettings(batch_size=np.int64(100), lam=np.array([0.1, 0.2]), gamma=[1, 10])
    assert s.batch_size == 100 and type(s.batch_size) is int
    assert s.lam == (0.1, 0.2) and s.gamma == (1.0, 10.0)
    json.dumps(s.to_dict())  # JSON-able


def test_defaults_are_the_papers_batched_experiment():
    s = S.BCDSettings()
    assert (s.batch_size, s.K, s.lam, s.inexact_iters, s.is_inexact) == (500, 1, None, None, True)
    assert S.layer_values(s.lam, 1, "lam", batched=True) == [0.1]
    assert S.layer_values(s.rho, 2, "rho", batched=True) == [0.0, 0.0]
    assert S.layer_values(s.gamma, 2, "gamma", batched=True) == [1.0, 100.0]
    assert S.layer_values(None, 2, "rho", batched=False) == [1e-2, 10.0]
    assert S.layer_values(None, 3, "gamma", batched=True) == [1.0, 1.0, 100.0]
    assert S.BCDSettings(batch_size=None).is_inexact is False


def test_layer_values_broadcast_and_check():
    assert S.layer_values(0.5, 3, "lam", batched=True) == [0.5, 0.5, 0.5]
    assert S.layer_values([0.5], 3, "lam", batched=True) == [0.5, 0.5, 0.5]
    with pytest.raises(ShapeError, match="rho: expected one value or 3"):
        S.layer_values([1.0, 2.0], 3, "rho", batched=True)
    with pytest.raises(ValueRangeError, match="lam"):
        S.layer_values([1.0, 0.0], 2, "lam", batched=True, positive=True)


def test_run_config_composes_the_groups():
    cfg = S.RunConfig().with_values({"train.epochs": 5, "gamma": (1.0, 10.0), "method": "sgd", "lr": 0.1})
    assert cfg.train.epochs == 5 and cfg.fenchel.gamma == (1.0, 10.0)
    bp = cfg.backprop_settings()
    assert (bp.optimizer, bp.lr, bp.epochs, bp.learning_rate) == ("sgd", 0.1, 5, 0.1)
    bcd = cfg.bcd_settings()
    assert bcd.gamma == (1.0, 10.0) and bcd.epochs == 5
    assert S.RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(FenchelError, match="not a setting"):
        cfg.with_values({"epoch": 5})
    with pytest.raises(FenchelError, match="unknown keys"):
        S.RunConfig.from_dict({"method": "adam", "train": {"epochz": 1}})
    with pytest.raises(ValueRangeError, match="inexact"):  # the combination is checked too
        S.RunConfig().with_values({"curvature": "running", "batch_size": None})


def test_peer_models_take_the_peers_group_and_train_full_batch():
    cfg = S.RunConfig().with_values({"method": "lau-bcd", "batch_size": None, "lau_alpha": 0.5, "epochs": 4})
    peer = cfg.trainer_settings()
    assert isinstance(peer, S.PeerSettings) and (peer.model, peer.lau_alpha, peer.epochs) == ("lau-bcd", 0.5, 4)
    assert S.RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert isinstance(S.RunConfig().with_values({"method": "askari"}).trainer_settings(), S.BCDSettings)
    assert [S.settings_group(m) for m in S.METHODS] == ["fenchel", "backprop", "backprop", "fenchel", "peers",
                                                         "peers"]
    with pytest.raises(ValueRangeError, match="batch_size: the taylor-admm model trains full batch"):
        S.RunConfig().with_values({"method": "taylor-admm"})
    with pytest.raises(ValueRangeError, match="admm_beta"):
        S.PeerSettings(batch_size=None, admm_beta=0.0)
    old = S.RunConfig().to_dict()
    del old["peers"]  # a run directory written before the peer models existed
    assert S.RunConfig.from_dict(old) == S.RunConfig()


def test_run_names_carry_only_the_settings_of_the_runs_own_trainer():
    from fenchel_cvx.peers import TaylorADMM
    from fenchel_cvx.runs import default_run_name, trainer_class

    cfg = S.RunConfig().with_values({"method": "taylor-admm", "batch_size": None, "admm_beta": 2.0, "K": 3,
                                     "lr": 0.5})
    name = default_run_name(cfg)
    assert "admm-beta-2" in name and "K-3" not in name and "lr" not in name
    assert "admm" not in default_run_name(cfg.replace(method="fenchel").with_values({"batch_size": 500}))
    assert trainer_class("taylor-admm") is TaylorADMM
    with pytest.raises(FenchelError, match="method"):
        trainer_class("hinton")


def test_a_config_written_before_the_groups_still_loads():
    flat = {"method": "fenchel", "dataset": "mnist-small", "data_dir": None, "sizes": [784, 300, 10], "loss": "ce",
            "batch_size": 500, "epochs": 3, "lam": [0.1], "rho": [0.0, 0.0], "gamma": [1.0, 100.0], "inexact": True,
            "curvature": "batch", "lr": None, "seed": 0}
    cfg = S.RunConfig.from_dict(flat)
    assert cfg.network.arch == (784, 300, 10) and cfg.fenchel.gamma == (1.0, 100.0) and cfg.train.epochs == 3


def test_one_place_says_what_may_change_on_resume():
    assert S.resumable() == {"epochs", "device", "eval_every", "threads", "data_dir", "record_blocks",
                             "dist_backend"}
    from fenchel_cvx.checkpoint import run_config
    from fenchel_cvx.network import LiftedNetwork
    net = LiftedNetwork([3, 4, 2], "relu", "ce")
    a, b = run_config(net, S.BCDSettings(epochs=1)), run_config(net, S.BCDSettings(epochs=9, threads=1))
    assert a == b
    assert run_config(net, S.BCDSettings(seed=1)) != a


def test_the_settings_choices_are_the_registries():
    """settings.py names choices without importing torch; the registries that own them must agree."""
    from fenchel_cvx.activations import ACTIVATIONS
    from fenchel_cvx.data import DATASETS
    from fenchel_cvx.losses import LOSSES
    assert set(S.ACTIVATION_NAMES) == set(ACTIVATIONS)
    assert set(S.LOSS_NAMES) == set(LOSSES)
    assert tuple(S.DATASET_NAMES) == tuple(DATASETS)


# -- the architecture: layer sizes or a spec -----------------------------------------------------------------------
@pytest.mark.parametrize("given,stored", [
    ((784, 300, 10), (784, 300, 10)), ([20, 8, 10], (20, 8, 10)), (np.array([5, 3]), (5, 3)),
    ("784-300-10", (784, 300, 10)), ("784x300x10", (784, 300, 10)), ("784-f300-f10", (784, 300, 10)),
    (" LeNet5 ", "lenet5"), ("lenet5:10", "lenet5:10"),
    ("1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10", "1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10"),
    ("c6k5p2 a2c16k5 a2f120 f84 f10", "c6k5p2-a2c16k5-a2f120-f84-f10"), ("1x28x28-f300-f10", "1x28x28-f300-f10"),
])
def test_arch_takes_sizes_and_specs(given, stored):
    net = S.NetworkSettings(arch=given)
    assert net.arch == stored and type(net.arch) is type(stored)
    assert S.NetworkSettings.from_dict(json.loads(json.dumps(net.to_dict()))) == net


@pytest.mark.parametrize("bad,needle", [
    ("1x28x28-c6k5", "output layer must be dense"), ("784-c6k5-q7", "'q7' is not a layer"), ("", "no layer"),
    ("lenet5:0", "N >= 1"), ((784,), "layer sizes"), (["c6k5", "f10"], "layer sizes"), (3.5, "layer sizes"),
])
def test_arch_refuses_what_is_no_architecture(bad, needle):
    with pytest.raises(ShapeError, match=f"arch: .*{needle}"):
        S.NetworkSettings(arch=bad)


def test_the_settings_read_the_spec_grammar_of_the_layers():
    """settings.py checks spec words without importing torch; its token grammar must be fenchel_cvx.layers'."""
    from fenchel_cvx import layers
    assert layers.LAYER_TOKEN is S.LAYER_TOKEN


def test_building_settings_with_a_spec_imports_no_torch():
    import subprocess
    import sys
    code = ("import sys; from fenchel_cvx.settings import RunConfig; "
            "c = RunConfig().with_values({'arch': '1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10'}); "
            "assert c.network.arch.startswith('1x28x28'); assert 'torch' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_layers_for_the_data():
    lenet = S.NetworkSettings(arch="lenet5").layers_for((1, 28, 28), 10)
    assert [la.describe() for la in lenet] == ["c6k5p2", "a2c16k5", "a2f120", "f84", "f10"]
    assert [la.describe() for la in S.NetworkSettings(arch="lenet5").layers_for((3, 32, 32), 7)][-1] == "f7"
    full = S.NetworkSettings(arch="1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10").layers_for((1, 28, 28), 10)
    assert full == lenet
    assert S.NetworkSettings(arch="c4k3-f2").layers_for((1, 6, 6), 2)[0].out_shape == (4, 4, 4)
    # layer sizes (and the default) are the fully connected network on flattened inputs, as before
    dense = S.NetworkSettings().layers_for((1, 28, 28), 10)
    assert [la.in_shape for la in dense] == [(784,), (300,)] and all(la.is_plain_dense for la in dense)
    assert [la.n_out for la in S.NetworkSettings(arch=(20, 8, 10)).layers_for((20,), 10)] == [8, 10]
    with pytest.raises(ShapeError, match=r"^arch: the data have 3x32x32 images and 10 classes, the spec reads "
                                         r"1x28x28-c6k5p2-.*the data have shape 3x32x32"):
        S.NetworkSettings(arch="1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10").layers_for((3, 32, 32), 10)
    with pytest.raises(ShapeError, match=r"^arch: the data have 1x28x28 images and 10 classes, .*f7: the output "
                                         r"layer has 7 outputs; end the spec with f10"):
        S.NetworkSettings(arch="1x28x28-c6k5-f7").layers_for((1, 28, 28), 10)
    with pytest.raises(ShapeError, match=r"^arch: the data have 20 features and 10 classes, the spec reads lenet5"):
        S.NetworkSettings(arch="lenet5").layers_for((20,), 10)
    with pytest.raises(ShapeError, match=r"lenet5:7 has 7 outputs"):
        S.NetworkSettings(arch="lenet5:7").layers_for((1, 28, 28), 10)
    with pytest.raises(ShapeError, match=r"^arch: the data have 784 features and 10 classes, so the architecture"):
        S.NetworkSettings(arch=(20, 8, 10)).layers_for((1, 28, 28), 10)
    with pytest.raises(ShapeError, match=r"^arch: 'lenet5' is an architecture spec, not layer sizes; .*layers_for"):
        S.NetworkSettings(arch="lenet5").sizes_for(784, 10)
    with pytest.raises(ShapeError, match=r"^in_shape"):
        S.NetworkSettings().layers_for((28, 28), 10)


def test_the_fast_default_is_taken_only_where_no_mode_flag_is_given():
    s = S.BCDSettings()
    assert s.takes_fast_default(dense=True, loss="ce") and s.mode(True) == S.FAST_MODE and s.mode() == S.MM_MODE
    assert S.FAST_MODE["curvature"] == "running" and S.MM_MODE["curvature"] == "batch"
    for flag, value in (("curvature", "running"), ("curvature", "batch"), ("inexact_iters", 1),
                        ("inexact_x_iters", 15), ("curvature_relax", 2.0), ("inexact_x_certify", False)):
        given = S.BCDSettings(**{flag: value})
        assert not given.takes_fast_default(dense=True, loss="ce"), flag
        assert given.mode() == {**S.MM_MODE, flag: value}  # the rest from the MM mode, not the fast one
    for other in ({"dense": False, "loss": "ce"}, {"dense": True, "loss": "mse"}):
        assert not s.takes_fast_default(**other)
    for settings in (S.BCDSettings(batch_size=None), S.BCDSettings(inexact=False),
                     S.BCDSettings(backend="cvx", inexact=False)):
        assert not settings.takes_fast_default(dense=True, loss="ce")
    # a mode flag alone is checked against the MM mode it selects
    with pytest.raises(ValueRangeError, match="inexact_x_float32: only uncertified"):
        S.BCDSettings(inexact_x_float32=True)
    with pytest.raises(ValueRangeError, match="curvature_relax: the line search"):
        S.BCDSettings(curvature="running", curvature_line_search=True, curvature_relax=2.0)


def test_appendix_c_has_its_own_values_for_lenet5():
    assert S.layer_values(None, 4, "lam", batched=True, family="lenet5") == [5.0, 5.0, 1.0, 1.0]
    assert S.layer_values(None, 5, "gamma", batched=True, family="lenet5") == [1e-4, 1e-2, 1.0, 1.0, 1.0]
    assert S.layer_values(None, 5, "rho", batched=True, family="lenet5") == [0.0] * 5
    assert S.layer_values(None, 5, "rho", batched=False, family="lenet5") == [1e-4, 1e-2, 1.0, 1.0, 1.0]
    from fenchel_cvx.bcd import BCD
    from fenchel_cvx.network import LiftedNetwork
    lenet = BCD(LiftedNetwork("lenet5", "relu", "ce", in_shape=(1, 28, 28)), S.BCDSettings())
    # a conv net: Appendix C's mode is its default
    assert lenet.resolved() == {"lam": [5.0, 5.0, 1.0, 1.0], "rho": [0.0] * 5, "gamma": [1e-4, 1e-2, 1.0, 1.0, 1.0],
                                "inexact": True, **S.MM_MODE, "curvature_relax": [1.0] * 5}
    other = BCD(LiftedNetwork("1x8x8-c3k3-f2", "relu", "ce"), S.BCDSettings())  # not LeNet-5: the dense pair
    assert other.resolved()["gamma"] == [1.0, 100.0]
