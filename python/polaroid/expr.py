"""Expressions that read like Polars (`col("a") > 1`, `.alias`, `.str.contains`, …) and
build `polaroid.v1.Expression` messages."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from typing import Any, Union

from polaroid.v1 import expr_pb2 as _pb

IntoExpr = Union["Expr", str, int, float, bool, None, _dt.date, _dt.datetime, _dt.timedelta]

_EPOCH = _dt.date(1970, 1, 1)


def _literal(value: Any) -> _pb.LiteralExpr:
    if value is None:
        return _pb.LiteralExpr(null_val=_pb.NullLiteral())
    if isinstance(value, bool):
        return _pb.LiteralExpr(bool_val=value)
    if isinstance(value, int):
        return _pb.LiteralExpr(int_val=value)
    if isinstance(value, float):
        return _pb.LiteralExpr(float_val=value)
    if isinstance(value, str):
        return _pb.LiteralExpr(string_val=value)
    if isinstance(value, bytes):
        return _pb.LiteralExpr(bytes_val=value)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            micros = int(value.timestamp() * 1_000_000)
            return _pb.LiteralExpr(
                datetime_val=_pb.DatetimeLiteral(
                    value=micros, unit=_pb.TIME_UNIT_MICROSECONDS, time_zone="UTC"
                )
            )
        delta = value - _dt.datetime(1970, 1, 1)
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return _pb.LiteralExpr(
            datetime_val=_pb.DatetimeLiteral(value=micros, unit=_pb.TIME_UNIT_MICROSECONDS)
        )
    if isinstance(value, _dt.date):
        return _pb.LiteralExpr(date_val=(value - _EPOCH).days)
    if isinstance(value, _dt.timedelta):
        micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
        return _pb.LiteralExpr(
            duration_val=_pb.DurationLiteral(value=micros, unit=_pb.TIME_UNIT_MICROSECONDS)
        )
    if isinstance(value, (list, tuple, set, frozenset)):
        return _pb.LiteralExpr(list_val=_pb.LiteralList(values=[_literal(v) for v in value]))
    raise TypeError(f"cannot use {type(value).__name__} as a literal")


def lit(value: Any) -> Expr:
    """A literal: `lit(3)`, `lit("a")`, `lit(None)`, `lit(date(2024, 1, 1))`."""
    return Expr(_pb.Expression(literal=_literal(value)))


def col(name: str) -> Expr:
    """A column by name; `col("*")` is every column."""
    return Expr(_pb.Expression(column=_pb.ColumnExpr(name=name)))


def into_expr(value: IntoExpr, *, str_as_column: bool = False) -> Expr:
    """`value` as an expression: expressions as they are, strings as columns when
    `str_as_column`, anything else as a literal."""
    if isinstance(value, Expr):
        return value
    if str_as_column and isinstance(value, str):
        return col(value)
    return lit(value)


def _binary(left: IntoExpr, op: Any, right: IntoExpr) -> Expr:
    return Expr(
        _pb.Expression(
            binary=_pb.BinaryExpr(left=into_expr(left).pb, op=op, right=into_expr(right).pb)
        )
    )


def _function(name: str, *args: IntoExpr) -> Expr:
    return Expr(
        _pb.Expression(
            function=_pb.FunctionExpr(name=name, args=[into_expr(a).pb for a in args])
        )
    )


class Expr:
    """A column expression. Build with `col`, `lit` and `when`; combine with operators."""

    __slots__ = ("pb",)

    def __init__(self, pb: _pb.Expression) -> None:
        self.pb = pb

    def __repr__(self) -> str:
        return f"<polaroid.Expr {self.pb}>".replace("\n", " ")

    # Python would otherwise make `a == b` a bool.
    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: IntoExpr) -> Expr:  # type: ignore[override]
        return _binary(self, _pb.EQ, other)

    def __ne__(self, other: IntoExpr) -> Expr:  # type: ignore[override]
        return _binary(self, _pb.NEQ, other)

    def __lt__(self, other: IntoExpr) -> Expr:
        return _binary(self, _pb.LT, other)

    def __le__(self, other: IntoExpr) -> Expr:
        return _binary(self, _pb.LTE, other)

    def __gt__(self, other: IntoExpr) -> Expr:
        return _binary(self, _pb.GT, other)

    def __ge__(self, other: IntoExpr) -> Expr:
        return _binary(self, _pb.GTE, other)

    def __add__(self, other: IntoExpr) -> Expr:
        return _binary(self, _pb.PLUS, other)

    def __radd__(self, other: IntoExpr) -> Expr:
        return _binary(other, _pb.PLUS, self)

    def __sub__(self, other: IntoExpr) -> Expr:
        return _binary(self, _pb.MINUS, other)

    def __rsub__(self, other: IntoExpr) -> Expr:
        return _binary(other, _pb.MINUS, self)

    def __mul__(self, other: IntoExpr) -> Expr:
        return _binary(self, _pb.MULTIPLY, other)

    def __rmul__(self, other: IntoExpr) -> Expr:
        return _binary(other, _pb.MULTIPLY, self)

    def __truediv__(self, other: IntoExpr) -> Expr:
        return _binary(self, _pb.DIVIDE, other)

    def __rtruediv__(self, other: IntoExpr) -> Expr:
        return _binary(other, _pb.DIVIDE, self)

    def __mod__(self, other: IntoExpr) -> Expr:
        return _binary(self, _pb.MODULO, other)

    def __and__(self, other: IntoExpr) -> Expr:
        return _binary(self, _pb.AND, other)

    def __rand__(self, other: IntoExpr) -> Expr:
        return _binary(other, _pb.AND, self)

    def __or__(self, other: IntoExpr) -> Expr:
        return _binary(self, _pb.OR, other)

    def __ror__(self, other: IntoExpr) -> Expr:
        return _binary(other, _pb.OR, self)

    def _unary(self, op: Any) -> Expr:
        return Expr(_pb.Expression(unary=_pb.UnaryExpr(op=op, expr=self.pb)))

    def __invert__(self) -> Expr:
        return self._unary(_pb.NOT)

    def __neg__(self) -> Expr:
        return self._unary(_pb.NEGATE)

    def __bool__(self) -> bool:
        raise TypeError(
            "an expression has no truth value: use & and | instead of `and` and `or`"
        )

    def is_null(self) -> Expr:
        return self._unary(_pb.IS_NULL)

    def is_not_null(self) -> Expr:
        return self._unary(_pb.IS_NOT_NULL)

    def abs(self) -> Expr:
        return self._unary(_pb.ABS)

    def alias(self, name: str) -> Expr:
        """Names the result: `(col("a") * 2).alias("double")`."""
        return _function("alias", self, name)

    def cast(self, dtype: Any, *, strict: bool = True) -> Expr:
        """Casts to a type: a Polars type (`pl.Int32`) or its name (`"Int32"`)."""
        return Expr(
            _pb.Expression(
                cast=_pb.CastExpr(expr=self.pb, data_type=_dtype_name(dtype), strict=strict)
            )
        )

    def is_in(self, values: Iterable[Any]) -> Expr:
        return _function("is_in", self, lit(list(values)))

    def is_between(self, lower: IntoExpr, upper: IntoExpr) -> Expr:
        """Both ends inclusive."""
        return _function("between", self, lower, upper)

    def fill_null(self, value: IntoExpr) -> Expr:
        return _function("fill_null", self, value)

    def round(self, decimals: int = 0) -> Expr:
        return _function("round", self, decimals)

    def sqrt(self) -> Expr:
        return _function("sqrt", self)

    def exp(self) -> Expr:
        return _function("exp", self)

    def log(self, base: float | None = None) -> Expr:
        return _function("log", self) if base is None else _function("log", self, base)

    def clip(self, lower: IntoExpr, upper: IntoExpr) -> Expr:
        return _function("clip", self, lower, upper)

    def _agg(self, function: Any, quantile: float | None = None) -> Expr:
        return Expr(
            _pb.Expression(
                aggregation=_pb.AggregationExpr(function=function, expr=self.pb, quantile=quantile)
            )
        )

    def sum(self) -> Expr:
        return self._agg(_pb.SUM)

    def min(self) -> Expr:
        return self._agg(_pb.MIN)

    def max(self) -> Expr:
        return self._agg(_pb.MAX)

    def mean(self) -> Expr:
        return self._agg(_pb.MEAN)

    def median(self) -> Expr:
        return self._agg(_pb.MEDIAN)

    def std(self) -> Expr:
        """Sample standard deviation (ddof 1)."""
        return self._agg(_pb.STD)

    def var(self) -> Expr:
        """Sample variance (ddof 1)."""
        return self._agg(_pb.VAR)

    def count(self) -> Expr:
        return self._agg(_pb.COUNT)

    def first(self) -> Expr:
        return self._agg(_pb.FIRST)

    def last(self) -> Expr:
        return self._agg(_pb.LAST)

    def n_unique(self) -> Expr:
        return self._agg(_pb.N_UNIQUE)

    def quantile(self, quantile: float) -> Expr:
        """Linear interpolation."""
        return self._agg(_pb.QUANTILE, quantile)

    def over(self, *partition_by: IntoExpr | Sequence[IntoExpr]) -> Expr:
        """Evaluates over groups, keeping rows: `col("x").sum().over("g")`."""
        keys = _flatten(partition_by)
        return Expr(
            _pb.Expression(
                over=_pb.OverExpr(
                    expr=self.pb,
                    partition_by=[into_expr(k, str_as_column=True).pb for k in keys],
                )
            )
        )

    def _rolling(self, function: Any, window_size: int, min_periods: int | None) -> Expr:
        # The contract's window: an aggregation over the last `window_size` rows.
        return Expr(
            _pb.Expression(
                window=_pb.WindowExpr(
                    expr=self._agg(function).pb, window_size=window_size, min_periods=min_periods
                )
            )
        )

    def rolling_sum(self, window_size: int, min_periods: int | None = None) -> Expr:
        """Sum of the last `window_size` rows; null until `min_periods` of them (default:
        all) are there, as Polars."""
        return self._rolling(_pb.SUM, window_size, min_periods)

    def rolling_mean(self, window_size: int, min_periods: int | None = None) -> Expr:
        return self._rolling(_pb.MEAN, window_size, min_periods)

    def rolling_min(self, window_size: int, min_periods: int | None = None) -> Expr:
        return self._rolling(_pb.MIN, window_size, min_periods)

    def rolling_max(self, window_size: int, min_periods: int | None = None) -> Expr:
        return self._rolling(_pb.MAX, window_size, min_periods)

    def rolling_median(self, window_size: int, min_periods: int | None = None) -> Expr:
        return self._rolling(_pb.MEDIAN, window_size, min_periods)

    def rolling_std(self, window_size: int, min_periods: int | None = None) -> Expr:
        return self._rolling(_pb.STD, window_size, min_periods)

    def rolling_var(self, window_size: int, min_periods: int | None = None) -> Expr:
        return self._rolling(_pb.VAR, window_size, min_periods)

    @property
    def str(self) -> _StringNamespace:
        return _StringNamespace(self)

    @property
    def dt(self) -> _TemporalNamespace:
        return _TemporalNamespace(self)


class _StringNamespace:
    """String functions: `col("name").str.contains("ab")`."""

    def __init__(self, expr: Expr) -> None:
        self._expr = expr

    def contains(self, pattern: str, *, literal: bool = False) -> Expr:
        return _function("contains", self._expr, pattern, literal)

    def starts_with(self, prefix: str) -> Expr:
        return _function("starts_with", self._expr, prefix)

    def ends_with(self, suffix: str) -> Expr:
        return _function("ends_with", self._expr, suffix)

    def to_lowercase(self) -> Expr:
        return _function("lower", self._expr)

    def to_uppercase(self) -> Expr:
        return _function("upper", self._expr)

    def len_chars(self) -> Expr:
        return _function("length", self._expr)

    def replace_all(self, pattern: str, value: str, *, literal: bool = False) -> Expr:
        return _function("replace", self._expr, pattern, value, literal)

    def slice(self, offset: int, length: int | None = None) -> Expr:
        if length is None:
            return _function("slice", self._expr, offset)
        return _function("slice", self._expr, offset, length)

    def strip_chars(self, characters: str | None = None) -> Expr:
        if characters is None:
            return _function("strip", self._expr)
        return _function("strip", self._expr, characters)


class _TemporalNamespace:
    """Date and time functions: `col("ts").dt.year()`."""

    def __init__(self, expr: Expr) -> None:
        self._expr = expr

    def year(self) -> Expr:
        return _function("year", self._expr)

    def month(self) -> Expr:
        return _function("month", self._expr)

    def day(self) -> Expr:
        return _function("day", self._expr)

    def hour(self) -> Expr:
        return _function("hour", self._expr)

    def weekday(self) -> Expr:
        """Monday is 1."""
        return _function("weekday", self._expr)

    def truncate(self, every: str) -> Expr:
        return _function("truncate", self._expr, every)

    def strftime(self, format: str) -> Expr:
        return _function("strftime", self._expr, format)


class When:
    """`when(cond).then(value)`, continued with `.when(...)` or ended with `.otherwise(...)`."""

    def __init__(self, branches: list[_pb.WhenThen], condition: Expr) -> None:
        self._branches = branches
        self._condition = condition

    def then(self, value: IntoExpr) -> Then:
        # As in Polars, a string is a column name; use `lit("…")` for text.
        branch = _pb.WhenThen(when=self._condition.pb, then=into_expr(value, str_as_column=True).pb)
        return Then([*self._branches, branch])


class Then(Expr):
    """A when/then chain; used as it is, rows no branch matched are null."""

    __slots__ = ("_branches",)

    def __init__(self, branches: list[_pb.WhenThen]) -> None:
        super().__init__(_pb.Expression(case_expr=_pb.CaseExpr(when_then=branches)))
        self._branches = branches

    def when(self, condition: IntoExpr) -> When:
        return When(self._branches, into_expr(condition, str_as_column=True))

    def otherwise(self, value: IntoExpr) -> Expr:
        return Expr(
            _pb.Expression(
                case_expr=_pb.CaseExpr(
                    when_then=self._branches, otherwise=into_expr(value, str_as_column=True).pb
                )
            )
        )


def when(condition: IntoExpr) -> When:
    """`when(col("a") > 1).then(lit("big")).otherwise(lit("small"))` (strings are columns)."""
    return When([], into_expr(condition, str_as_column=True))


def coalesce(*exprs: IntoExpr) -> Expr:
    return _function("coalesce", *[into_expr(e, str_as_column=True) for e in exprs])


def _flatten(items: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, (list, tuple)):
            out.extend(item)
        else:
            out.append(item)
    return out


def _dtype_name(dtype: Any) -> str:
    if isinstance(dtype, str):
        return dtype
    # Polars types print as their names (`Int64`, `String`, `Datetime(time_unit='us', …)`).
    name = getattr(dtype, "__name__", None) or type(dtype).__name__
    inner = getattr(dtype, "inner", None)
    if name == "List" and inner is not None:
        return f"List[{_dtype_name(inner)}]"
    unit = getattr(dtype, "time_unit", None)
    if unit and name in ("Datetime", "Duration"):
        zone = getattr(dtype, "time_zone", None)
        return f"{name}[{unit}, {zone}]" if zone else f"{name}[{unit}]"
    return str(name)
