"""Values a model may return that strict JSON cannot carry (issue 15), by name.

Defined in a module the worker imports, so the classes are made inside the
worker's ``infer``, as a model's would be.
"""

from __future__ import annotations

from typing import Any


def hostile_values() -> dict[str, Any]:
    class MyStr(str):
        pass

    class MyInt(int):
        pass

    class MyDict(dict):  # type: ignore[type-arg]
        pass

    class MyList(list):  # type: ignore[type-arg]
        pass

    class NoPickleStr(str):
        def __reduce_ex__(self, protocol: Any) -> Any:
            raise RuntimeError("cannot pickle me")

    class NoPickleDict(dict):  # type: ignore[type-arg]
        def __reduce_ex__(self, protocol: Any) -> Any:
            raise RuntimeError("cannot pickle me")

    class NoPickle:
        def __reduce_ex__(self, protocol: Any) -> Any:
            raise RuntimeError("cannot pickle me")

    def nested(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = [value]
        return value

    return {
        "str_subclass": {"out": {"label": MyStr("x")}},
        "int_subclass": {"out": {"count": MyInt(3)}},
        "dict_subclass": {"out": MyDict(a=1)},
        "list_subclass": {"out": MyList([1])},
        "str_reduce_raises": {"out": NoPickleStr("x")},
        "dict_reduce_raises": {"out": NoPickleDict(a=1)},
        "object_reduce_raises": {"out": NoPickle()},
        "nested_500": {"out": nested(500)},
        "nested_980": {"out": nested(980)},
        "nan": {"out": {"score": float("nan")}},
        "int_and_str_keys": {"out": {1: "a", "1": "b"}},
        "tuple_key": {"out": {(2, 3): "a"}},
        "none_key": {"out": {None: "a"}},
    }


# The key (or the reason) each case's error must name.
EXPECTED = {
    "str_subclass": "'out.label'",
    "int_subclass": "'out.count'",
    "nested_500": "nested deeper than 100 levels",
    "nested_980": "nested deeper than 100 levels",
    "nan": "'out.score'",
    "int_and_str_keys": "'out.1'",
    "tuple_key": "'out.(2, 3)'",
    "none_key": "'out.None'",
}


def expected(case: str) -> str:
    return EXPECTED.get(case, "'out'")
