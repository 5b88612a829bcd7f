"""The models of one session, each loaded once and shared by encoders, decoders and heads."""

from __future__ import annotations

import os

from ssb.codec import zoo
from ssb.errors import ModelMismatchError

__all__ = ["ModelSet"]


class ModelSet:
    """Loaded models keyed by kind and id (see :mod:`ssb.codec.zoo`).

    ``overrides``: ``{kind: zoo id or checkpoint path}`` replacing the zoo's default of a kind
    (``ssb analyze --weights PATH`` is ``{"codec": PATH}``).  A stream names the codec that
    coded it; :meth:`codec` refuses weights of another id rather than decoding garbage.
    """

    def __init__(self, overrides: dict[str, str | os.PathLike | None] | None = None):
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self._cache: dict[tuple, object] = {}
        self._front = None

    def _load(self, kind: str, target, behind: str | None):
        key = (kind, str(target), behind)
        if key not in self._cache:
            self._cache[key] = zoo.load(kind, target, behind=behind)
        return self._cache[key]

    def codec(self, model_id: str | None = None):
        """The codec of ``model_id`` (a stream's ``"model"``), or the session's codec when ``None``."""
        if model_id is None:
            return self._load("codec", self.overrides.get("codec"), None)
        return self.model("codec", model_id)

    def model(self, kind: str, model_id: str, *, behind: str | None = None):
        """The ``kind`` model a stream names (``model_id``): the zoo's, or the session's override of
        ``kind`` if it is that very model (a checkpoint of another id is refused, not decoded with)."""
        override = self.overrides.get(kind)
        known = zoo.card(model_id, kind).id if override is None or zoo.known(model_id) else model_id
        model = self._load(kind, override if override is not None else known, behind)
        if model.identity.id != known:
            raise ModelMismatchError(f"the stream was coded with {kind} model {known}, but the weights given are "
                                     f"{model.identity.id} ({model.checkpoint_path})", field="weights")
        return model

    def get(self, kind: str, *, behind: str | None = None, missing_ok: bool = False):
        """The model of ``kind`` (override or zoo default) trained behind codec ``behind``."""
        try:
            return self._load(kind, self.overrides.get(kind), behind)
        except ModelMismatchError:
            if missing_ok:
                return None
            raise

    def front(self):
        """The teacher front (pretrained) the encoders run on the original pixels."""
        if self._front is None:
            from ssb.backbones.features import build_front

            name = getattr(self.codec(), "front_name", None)
            if name is None:
                raise ModelMismatchError("the codec checkpoint does not say which front it codes", field="weights.front")
            self._front = build_front(name, pretrained=True).eval()
        return self._front
