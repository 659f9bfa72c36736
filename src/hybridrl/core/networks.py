"""Flax linen networks: MLP, Gaussian and categorical policies, value and Q heads, and a batched
ensemble wrapper.

Every network also runs in numpy through ``apply_numpy(params, inputs)``, which gives the same
numbers as ``apply`` without a jitted call per environment step (see :mod:`distributions`).
Initialisation follows the PPO implementation details (Huang et al. 2022): orthogonal weights with
gain sqrt(2) in hidden layers, 0.01 for the policy output and 1 for value outputs, zero biases.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hybridrl.core.distributions import Categorical, DiagGaussian

Params = Mapping[str, Any]

_ACTIVATIONS: dict[str, tuple[Callable[[jax.Array], jax.Array], Callable[[np.ndarray], np.ndarray]]] = {
    "tanh": (jnp.tanh, np.tanh),
    "relu": (nn.relu, lambda x: np.maximum(x, 0.0)),
    "elu": (nn.elu, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))),
    "silu": (nn.silu, lambda x: x / (1.0 + np.exp(-x))),
    # Keras' default slope (0.3), the one Design-Bench's surrogates were trained with.
    "leaky_relu": (lambda x: nn.leaky_relu(x, negative_slope=0.3), lambda x: np.where(x > 0, x, 0.3 * x)),
}


def _activation(name: str) -> Callable[[jax.Array], jax.Array]:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name][0]


def _dense_numpy(params: Params, x: np.ndarray) -> np.ndarray:
    return x @ np.asarray(params["kernel"]) + np.asarray(params["bias"])


def _mlp_numpy(params: Params, x: np.ndarray, num_hidden: int, activation: str, has_output: bool) -> np.ndarray:
    # A plain function, not an MLP instance: building a Flax module per environment step costs
    # more than the forward pass itself.
    act = _ACTIVATIONS[activation][1]
    for index in range(num_hidden):
        x = act(_dense_numpy(params[f"hidden_{index}"], x))
    return _dense_numpy(params["output"], x) if has_output else x


def _mlp_layers(params: Params, num_hidden: int, output: Params) -> list[Params]:
    return [params[f"hidden_{index}"] for index in range(num_hidden)] + [output]


@dataclasses.dataclass(frozen=True)
class JointNumpyMLP:
    """Several MLPs of equal depth and activation on one input, run in numpy as one wider MLP.

    The first layers' kernels sit side by side and every later layer's kernels on a block diagonal,
    so each layer is one matmul, one bias add and one activation for all the networks together. On
    the host, where a forward pass of a 64x64 network costs a few numpy calls' overhead rather than
    arithmetic, PPO's policy and value cost about one network's time. The off-diagonal zeros add
    exact zeros, so outputs equal the separate passes' up to the summation order of the matmul.
    """

    kernels: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    activation: str
    #: where each network's output ends in the joint output
    output_ends: tuple[int, ...]

    @classmethod
    def from_layers(cls, networks: Sequence[Sequence[Params]], activation: str) -> JointNumpyMLP:
        """Join networks given as lists of their dense layers' params (``kernel``, ``bias``), input first."""
        if len({len(layers) for layers in networks}) != 1:
            raise ValueError("networks of different depths cannot be joined")
        kernels, biases = [], []
        for depth, layers in enumerate(zip(*networks, strict=True)):
            blocks = [np.asarray(layer["kernel"], dtype=np.float32) for layer in layers]
            if depth == 0:
                kernel = np.concatenate(blocks, axis=1)
            else:
                kernel = np.zeros((sum(block.shape[0] for block in blocks), sum(block.shape[1] for block in blocks)),
                                  dtype=np.float32)
                row = column = 0
                for block in blocks:
                    kernel[row:row + block.shape[0], column:column + block.shape[1]] = block
                    row, column = row + block.shape[0], column + block.shape[1]
            kernels.append(kernel)
            biases.append(np.concatenate([np.asarray(layer["bias"], dtype=np.float32) for layer in layers]))
        ends = np.cumsum([np.shape(layers[-1]["bias"])[0] for layers in networks])
        return cls(tuple(kernels), tuple(biases), activation, tuple(int(end) for end in ends))

    @classmethod
    def stack(cls, joints: Sequence[JointNumpyMLP]) -> JointNumpyMLP:
        """Joint MLPs of the same shapes (one per seed) as one with a leading seed axis: each layer is
        one batched matmul, ``[seeds, rows, in] @ [seeds, in, out] + [seeds, 1, out]``, and the input
        is ``[seeds, rows, in]``."""
        first = joints[0]
        kernels = tuple(np.stack(layer) for layer in zip(*[joint.kernels for joint in joints], strict=True))
        biases = tuple(np.stack(layer)[:, None] for layer in zip(*[joint.biases for joint in joints], strict=True))
        return cls(kernels, biases, first.activation, first.output_ends)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """Each network's output for ``x``, in the order they were given."""
        act = _ACTIVATIONS[self.activation][1]
        last = len(self.kernels) - 1
        for depth, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            x = x @ kernel + bias
            if depth < last:
                x = act(x)
        starts = (0, *self.output_ends[:-1])
        return [x[..., start:end] for start, end in zip(starts, self.output_ends, strict=True)]


class MLP(nn.Module):
    """Multi-layer perceptron: hidden layers with an activation, then an optional linear output.

    :param hidden_sizes: width of each hidden layer.
    :param output_size: width of the linear output layer; ``None`` returns the last hidden layer.
    :param activation: ``"tanh"``, ``"relu"``, ``"elu"``, ``"silu"`` or ``"leaky_relu"`` (slope 0.3).
    :param hidden_gain: orthogonal-init gain of hidden layers.
    :param output_gain: orthogonal-init gain of the output layer.
    """

    hidden_sizes: Sequence[int]
    output_size: int | None = None
    activation: str = "tanh"
    hidden_gain: float = math.sqrt(2.0)
    output_gain: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = _activation(self.activation)
        for index, width in enumerate(self.hidden_sizes):
            x = act(nn.Dense(width, kernel_init=nn.initializers.orthogonal(self.hidden_gain),
                             bias_init=nn.initializers.zeros, name=f"hidden_{index}")(x))
        if self.output_size is not None:
            x = nn.Dense(self.output_size, kernel_init=nn.initializers.orthogonal(self.output_gain),
                         bias_init=nn.initializers.zeros, name="output")(x)
        return x

    @nn.nowrap
    def apply_numpy(self, params: Params, x: np.ndarray) -> np.ndarray:
        """``apply`` in numpy; ``params`` is this module's parameter dict (without ``"params"``)."""
        return _mlp_numpy(params, x, len(self.hidden_sizes), self.activation, self.output_size is not None)


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian policy: an MLP torso, a linear mean, and a log-std.

    :param action_dim: number of action dimensions.
    :param hidden_sizes: torso widths.
    :param activation: torso activation.
    :param state_dependent_std: log-std from a linear head on the torso (SAC style) instead of a
        free, state-independent parameter (PPO style).
    :param log_std_init: initial value of the state-independent log-std.
    :param log_std_bounds: clip range of a state-dependent log-std.
    :param squash: tanh-squash actions into (-1, 1).
    :param tanh_mean: pass the mean through tanh (the distribution stays an unsquashed Gaussian),
        as the PROPS code's actor does.
    :param soft_log_std_bounds: map a state-dependent log-std into ``log_std_bounds`` smoothly,
        ``low + (high - low) (tanh(x) + 1) / 2``, instead of clipping it (Uni-O4's policies), so
        the gradient never vanishes at a bound.
    """

    action_dim: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    state_dependent_std: bool = False
    log_std_init: float = 0.0
    log_std_bounds: tuple[float, float] = (-20.0, 2.0)
    squash: bool = False
    mean_gain: float = 0.01
    tanh_mean: bool = False
    soft_log_std_bounds: bool = False

    @nn.compact
    def __call__(self, observation: jax.Array) -> DiagGaussian:
        features = MLP(self.hidden_sizes, None, self.activation, name="torso")(observation)
        mean = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(self.mean_gain),
                        bias_init=nn.initializers.zeros, name="mean")(features)
        if self.tanh_mean:
            mean = jnp.tanh(mean)
        if self.state_dependent_std:
            log_std = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(self.mean_gain),
                               bias_init=nn.initializers.constant(self.log_std_init), name="log_std")(features)
            log_std = self._bound_log_std(jnp, log_std)
        else:
            log_std_param = self.param("log_std", nn.initializers.constant(self.log_std_init),
                                       (self.action_dim,))
            log_std = jnp.broadcast_to(log_std_param, mean.shape)
        return DiagGaussian(mean=mean, log_std=log_std, squash=self.squash)

    @nn.nowrap
    def apply_numpy(self, params: Params, observation: np.ndarray) -> DiagGaussian:
        """``apply`` in numpy; returns a numpy-backed :class:`DiagGaussian`."""
        features = _mlp_numpy(params["torso"], observation, len(self.hidden_sizes), self.activation, False)
        mean = _dense_numpy(params["mean"], features)
        if self.tanh_mean:
            mean = np.tanh(mean)
        if self.state_dependent_std:
            log_std = self._bound_log_std(np, _dense_numpy(params["log_std"], features))
        else:
            log_std = np.broadcast_to(np.asarray(params["log_std"]), mean.shape)
        return DiagGaussian(mean=mean, log_std=log_std, squash=self.squash)

    @nn.nowrap
    def numpy_layers(self, params: Params) -> list[Params] | None:
        """The dense layers from the observation to the mean, for :class:`JointNumpyMLP` (None for a
        state-dependent std, which branches off the torso)."""
        if self.state_dependent_std:
            return None
        return _mlp_layers(params["torso"], len(self.hidden_sizes), params["mean"])

    @nn.nowrap
    def distribution_numpy(self, params: Params, mean_layer_output: np.ndarray) -> DiagGaussian:
        """The numpy distribution from the output of :meth:`numpy_layers`' last layer."""
        mean = np.tanh(mean_layer_output) if self.tanh_mean else mean_layer_output
        log_std = np.zeros_like(mean) + params["log_std"]  # as broadcast_to, at a quarter of its cost
        return DiagGaussian(mean=mean, log_std=log_std, squash=self.squash)

    @nn.nowrap
    def _bound_log_std(self, xp: Any, log_std: Any) -> Any:
        low, high = self.log_std_bounds
        if self.soft_log_std_bounds:
            return low + 0.5 * (high - low) * (xp.tanh(log_std) + 1.0)
        return xp.clip(log_std, low, high)

    # The split below lets a learner hold the torso fixed and fit only the output layer on
    # precomputed features (the sampling-error fit of PROPS), at a fraction of a full pass's cost.

    @nn.nowrap
    def features(self, params: Params, observation: jax.Array) -> jax.Array:
        """The torso's output (last hidden layer) for ``observation``."""
        return cast(jax.Array, MLP(self.hidden_sizes, None, self.activation).apply(
            {"params": params["torso"]}, observation))

    @nn.nowrap
    def head_params(self, params: Params) -> dict[str, Any]:
        """The parameters :meth:`head` reads: the mean layer and the log-std."""
        return {"mean": params["mean"], "log_std": params["log_std"]}

    @nn.nowrap
    def head(self, params: Params, features: jax.Array) -> DiagGaussian:
        """The distribution from torso ``features``; ``params`` needs only :meth:`head_params`."""
        mean = features @ params["mean"]["kernel"] + params["mean"]["bias"]
        if self.tanh_mean:
            mean = jnp.tanh(mean)
        if self.state_dependent_std:
            log_std = self._bound_log_std(jnp, features @ params["log_std"]["kernel"] + params["log_std"]["bias"])
        else:
            log_std = jnp.broadcast_to(params["log_std"], mean.shape)
        return DiagGaussian(mean=mean, log_std=log_std, squash=self.squash)


class CategoricalPolicy(nn.Module):
    """Categorical policy over ``num_actions`` discrete actions: an MLP producing logits."""

    num_actions: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    logits_gain: float = 0.01

    @nn.compact
    def __call__(self, observation: jax.Array) -> Categorical:
        logits = MLP(self.hidden_sizes, self.num_actions, self.activation,
                     output_gain=self.logits_gain, name="mlp")(observation)
        return Categorical(logits=logits)

    @nn.nowrap
    def apply_numpy(self, params: Params, observation: np.ndarray) -> Categorical:
        """``apply`` in numpy; returns a numpy-backed :class:`Categorical`."""
        logits = _mlp_numpy(params["mlp"], observation, len(self.hidden_sizes), self.activation, True)
        return Categorical(logits=logits)

    @nn.nowrap
    def numpy_layers(self, params: Params) -> list[Params] | None:
        """The dense layers from the observation to the logits, for :class:`JointNumpyMLP`."""
        return _mlp_layers(params["mlp"], len(self.hidden_sizes), params["mlp"]["output"])

    @nn.nowrap
    def distribution_numpy(self, params: Params, logits: np.ndarray) -> Categorical:
        """The numpy distribution from the output of :meth:`numpy_layers`' last layer."""
        return Categorical(logits=logits)

    @nn.nowrap
    def features(self, params: Params, observation: jax.Array) -> jax.Array:
        """The last hidden layer's output for ``observation``."""
        hidden = {name: value for name, value in params["mlp"].items() if name != "output"}
        return cast(jax.Array, MLP(self.hidden_sizes, None, self.activation).apply({"params": hidden}, observation))

    @nn.nowrap
    def head_params(self, params: Params) -> dict[str, Any]:
        """The parameters :meth:`head` reads: the logits layer."""
        return {"mlp": {"output": params["mlp"]["output"]}}

    @nn.nowrap
    def head(self, params: Params, features: jax.Array) -> Categorical:
        """The distribution from hidden ``features``; ``params`` needs only :meth:`head_params`."""
        output = params["mlp"]["output"]
        return Categorical(logits=features @ output["kernel"] + output["bias"])


class ValueHead(nn.Module):
    """State-value network V(s): an MLP with one linear output, squeezed to a scalar per state."""

    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    output_gain: float = 1.0

    @nn.compact
    def __call__(self, observation: jax.Array) -> jax.Array:
        return MLP(self.hidden_sizes, 1, self.activation, output_gain=self.output_gain,
                   name="mlp")(observation)[..., 0]

    @nn.nowrap
    def apply_numpy(self, params: Params, observation: np.ndarray) -> np.ndarray:
        """``apply`` in numpy."""
        return _mlp_numpy(params["mlp"], observation, len(self.hidden_sizes), self.activation, True)[..., 0]

    @nn.nowrap
    def numpy_layers(self, params: Params) -> list[Params]:
        """The dense layers from the observation to the value, for :class:`JointNumpyMLP`."""
        return _mlp_layers(params["mlp"], len(self.hidden_sizes), params["mlp"]["output"])


class QHead(nn.Module):
    """Action-value network Q(s, a): an MLP over the concatenated state and action."""

    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    output_gain: float = 1.0

    @nn.compact
    def __call__(self, observation: jax.Array, action: jax.Array) -> jax.Array:
        inputs = jnp.concatenate([observation, action], axis=-1)
        return MLP(self.hidden_sizes, 1, self.activation, output_gain=self.output_gain,
                   name="mlp")(inputs)[..., 0]


class Ensemble(nn.Module):
    """``num_members`` copies of ``member`` with stacked parameters, evaluated in one call.

    Parameters get a leading member axis; each member is initialised with its own key. With
    ``shared_inputs`` every member sees the same inputs (outputs get a leading member axis);
    otherwise each input has a leading member axis and member ``i`` sees slice ``i``.

    :param member: a module instance to replicate, e.g. ``QHead((256, 256))``.
    :param num_members: ensemble size.
    :param shared_inputs: broadcast inputs to every member instead of splitting them.
    """

    member: nn.Module
    num_members: int
    shared_inputs: bool = True

    @nn.compact
    def __call__(self, *inputs: Any) -> Any:
        member_type = type(self.member)
        member_fields = {field.name: getattr(self.member, field.name)
                         for field in dataclasses.fields(self.member)
                         if field.init and field.name not in ("parent", "name")}
        batched = nn.vmap(member_type, variable_axes={"params": 0}, split_rngs={"params": True},
                          in_axes=None if self.shared_inputs else 0, out_axes=0,
                          axis_size=self.num_members)
        return batched(**member_fields, name="members")(*inputs)


def member_params(ensemble_params: Params, index: int) -> Any:
    """The parameters of member ``index`` from an :class:`Ensemble`'s parameters, usable with
    ``ensemble.member.apply``."""
    return jax.tree_util.tree_map(lambda leaf: leaf[index], ensemble_params["members"])
