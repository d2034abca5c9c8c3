"""`DataFrame`: a Polars-like frame whose rows live on the server, behind a handle. Every
method returns a new frame (a new handle); nothing is computed until rows are needed."""

from __future__ import annotations

import datetime as dt
import html
import operator
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from polaroid import errors
from polaroid.connection import Connection, default_connection
from polaroid.expr import Expr, IntoExpr, _flatten, into_expr
from polaroid.v1 import dataframe_pb2 as pb
from polaroid.v1 import expr_pb2

if TYPE_CHECKING:
    import pandas
    import polars

JoinHow = Literal["inner", "left", "right", "full", "semi", "anti", "cross"]

_JOIN = {
    "inner": pb.JOIN_HOW_INNER,
    "left": pb.JOIN_HOW_LEFT,
    "right": pb.JOIN_HOW_RIGHT,
    "full": pb.JOIN_HOW_FULL,
    "outer": pb.JOIN_HOW_FULL,
    "semi": pb.JOIN_HOW_SEMI,
    "anti": pb.JOIN_HOW_ANTI,
    "cross": pb.JOIN_HOW_CROSS,
}
# The established contract's join types; semi and anti only in Polaroid's `how`.
_JOIN_TYPE = {
    "inner": pb.INNER,
    "left": pb.LEFT,
    "right": pb.RIGHT,
    "full": pb.FULL,
    "outer": pb.FULL,
}
_KEEP = {
    "first": pb.UNIQUE_KEEP_FIRST,
    "last": pb.UNIQUE_KEEP_LAST,
    "none": pb.UNIQUE_KEEP_NONE,
    "any": pb.UNIQUE_KEEP_ANY,
}
_FILL = {
    "forward": pb.FILL_FORWARD,
    "backward": pb.FILL_BACKWARD,
    "min": pb.FILL_MIN,
    "max": pb.FILL_MAX,
    "mean": pb.FILL_MEAN,
    "zero": pb.FILL_ZERO,
    "one": pb.FILL_ONE,
}
_AGG = {
    "sum": expr_pb2.SUM,
    "min": expr_pb2.MIN,
    "max": expr_pb2.MAX,
    "mean": expr_pb2.MEAN,
    "median": expr_pb2.MEDIAN,
    "count": expr_pb2.COUNT,
    "first": expr_pb2.FIRST,
    "last": expr_pb2.LAST,
    "len": expr_pb2.COUNT,
    "n_unique": expr_pb2.N_UNIQUE,
}


def _pick(table: Mapping[str, Any], name: str, what: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise errors.InvalidArgumentError(
            f"unknown {what} {name!r}; expected one of {', '.join(sorted(table))}"
        ) from None


def _per_key(value: bool | Sequence[bool], keys: int, what: str) -> list[bool]:
    """One flag per sort key: a single value for every key, or one each (as Polars)."""
    if isinstance(value, bool):
        return [value] * keys
    flags = [bool(v) for v in value]
    if len(flags) != keys:
        raise errors.InvalidArgumentError(f"`{what}` has {len(flags)} values for {keys} sort keys")
    return flags


def _duration(value: Any) -> str | None:
    """A Polars duration string: as given, or from a timedelta (or a number, as is)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dt.timedelta):
        micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
        return f"{micros}us"
    return str(value)


def _names(columns: Sequence[Any]) -> list[str]:
    return [str(c) for c in _flatten(columns)]


#: The largest `n` a Head or Limit call accepts (Polars' row index is 32 bits): a larger
#: one is left to the server, which refuses it at the call.
_MAX_ROWS = 2**32 - 1


class _PendingHead:
    """The first `n` rows of `parent`, not yet asked of the server: collecting them is
    one `Collect(parent, limit=n)`, and the call that makes their handle (`method`, Head
    or Limit) is made only when the frame is used for anything else."""

    __slots__ = ("lock", "method", "n", "parent")

    def __init__(self, parent: DataFrame, method: str, n: int) -> None:
        self.parent = parent
        self.method = method
        self.n = n
        self.lock = threading.Lock()


class DataFrame:
    """A server-side frame. Build one with `read_parquet`, `read_csv`, `from_polars`, …

    >>> import polaroid as pr
    >>> df = pr.from_dict({"a": [1, 2, 3]})          # doctest: +SKIP
    >>> df.filter(pr.col("a") > 1).collect()          # doctest: +SKIP
    shape: (2, 1) …
    """

    def __init__(self, handle: str, connection: Connection) -> None:
        self._handle: str | None = handle
        self._pending: _PendingHead | None = None
        self._connection = connection
        self._schema: polars.Schema | None = None
        connection.track(handle, self)

    @classmethod
    def _head_of(cls, parent: DataFrame, method: str, n: int) -> DataFrame:
        pending = parent._pending
        if pending is not None and parent._handle is None:
            # The first n of the first m rows are the first min(n, m).
            n, parent = min(n, pending.n), pending.parent
        frame = cls.__new__(cls)
        frame._handle = None
        frame._pending = _PendingHead(parent, method, n)
        frame._connection = parent._connection
        frame._schema = parent._schema
        return frame

    @property
    def handle(self) -> str:
        """The server's handle for this frame. A `head(n)` or `limit(n)` frame gets its
        own only now, on first use: collecting it needs none."""
        handle = self._handle
        if handle is None:
            handle = self._make_pending()
        return handle

    def _make_pending(self) -> str:
        pending = self._pending
        if pending is None:  # Another thread made it meanwhile.
            assert self._handle is not None
            return self._handle
        with pending.lock:
            if self._handle is None:
                conn = self._connection
                reply = conn.call(
                    pending.method,
                    getattr(pb, f"{pending.method}Request")(handle=pending.parent.handle, n=pending.n),
                )
                if reply.error:
                    raise errors.InvalidArgumentError(reply.error)
                conn.track(reply.handle, self)
                self._handle = reply.handle
        # Made: the parent may go (its handle is released as with any other frame).
        self._pending = None
        return self._handle

    def _limited(self, limit: int | None) -> tuple[str, int | None]:
        """The handle and limit a collect of the first `limit` rows asks for: a pending
        head's parent with its `n`, so that no handle is made for it."""
        pending = self._pending
        if pending is None or self._handle is not None:
            return self.handle, limit
        return pending.parent.handle, pending.n if limit is None else min(limit, pending.n)

    # -- plumbing ---------------------------------------------------------------------

    def _derive(self, method: str, request: Any) -> DataFrame:
        return _read(method, request, self._connection)

    def _label(self) -> str:
        pending = self._pending
        if pending is not None and self._handle is None:
            return f"{pending.method.lower()}({pending.n}) of {pending.parent._label()}"
        return self.handle

    def __repr__(self) -> str:
        return f"<polaroid.DataFrame {self._label()}>"

    # -- metadata ---------------------------------------------------------------------

    @property
    def schema(self) -> polars.Schema:
        """Column names and Polars data types, in order (from an empty result: nothing is
        computed)."""
        if self._schema is None:
            pending = self._pending
            if pending is not None and self._handle is None:
                self._schema = pending.parent.schema
            else:
                self._schema = self.collect(limit=0).schema
        return self._schema

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names())

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns); rows may need the server to compute them."""
        reply = self._connection.call("GetShape", pb.GetShapeRequest(handle=self.handle))
        return (reply.rows, reply.columns)

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return len(self.schema)

    def explain(self, *, optimized: bool = True, tree: bool = False) -> str:
        """Polars' logical plan of this frame: after its optimizer (`optimized`) or as
        built, as indented text or drawn as a tree (`tree`)."""
        reply = self._connection.call(
            "Explain", pb.ExplainRequest(handle=self.handle, optimized=optimized, format_tree=tree)
        )
        return reply.logical_plan

    # -- transforms --------------------------------------------------------------------

    def select(self, *exprs: IntoExpr | Sequence[IntoExpr], **named: IntoExpr) -> DataFrame:
        """`df.select("a", pr.col("b") * 2, c=pr.col("a") + 1)`."""
        items = [into_expr(e, str_as_column=True) for e in _flatten(exprs)]
        items += [into_expr(v, str_as_column=True).alias(k) for k, v in named.items()]
        return self._derive(
            "Select", pb.SelectRequest(handle=self.handle, exprs=[e.pb for e in items])
        )

    def filter(self, *predicates: IntoExpr) -> DataFrame:
        """Keeps rows where every predicate holds."""
        if not predicates:
            raise errors.InvalidArgumentError("filter needs a predicate")
        combined = into_expr(predicates[0], str_as_column=True)
        for predicate in predicates[1:]:
            combined = combined & into_expr(predicate, str_as_column=True)
        return self._derive("Filter", pb.FilterRequest(handle=self.handle, predicate=combined.pb))

    def with_columns(self, *exprs: IntoExpr | Sequence[IntoExpr], **named: IntoExpr) -> DataFrame:
        items = [into_expr(e, str_as_column=True) for e in _flatten(exprs)]
        items += [into_expr(v, str_as_column=True).alias(k) for k, v in named.items()]
        return self._derive(
            "WithColumns", pb.WithColumnsRequest(handle=self.handle, exprs=[e.pb for e in items])
        )

    def drop(self, *columns: str | Sequence[str]) -> DataFrame:
        return self._derive("Drop", pb.DropRequest(handle=self.handle, columns=_names(columns)))

    def rename(self, mapping: Mapping[str, str]) -> DataFrame:
        return self._derive("Rename", pb.RenameRequest(handle=self.handle, mapping=dict(mapping)))

    def sort(
        self,
        by: str | Expr | Sequence[str | Expr],
        *more_by: str | Expr,
        descending: bool | Sequence[bool] = False,
        nulls_last: bool | Sequence[bool] = False,
    ) -> DataFrame:
        keys = _flatten([by, *more_by])
        flags = zip(_per_key(descending, len(keys), "descending"), _per_key(nulls_last, len(keys), "nulls_last"))
        request = pb.SortRequest(handle=self.handle, maintain_order=True)
        if all(isinstance(k, str) for k in keys):
            # Names only: the established contract's `columns`.
            request.columns.extend(
                pb.SortColumn(name=k, descending=d, nulls_last=n) for k, (d, n) in zip(keys, flags)
            )
        else:
            # Keys in order, names as column expressions (`exprs` come after `columns`).
            request.exprs.extend(
                pb.SortExpr(expr=into_expr(k, str_as_column=True).pb, descending=d, nulls_last=n)
                for k, (d, n) in zip(keys, flags)
            )
        return self._derive("Sort", request)

    def unique(
        self, subset: str | Sequence[str] | None = None, *, keep: str = "any",
        maintain_order: bool = True,
    ) -> DataFrame:
        return self._derive(
            "Unique",
            pb.UniqueRequest(
                handle=self.handle,
                subset=_names([subset]) if subset is not None else [],
                keep=_pick(_KEEP, keep, "keep"),
                keep_first=keep == "first",
                maintain_order=maintain_order,
            ),
        )

    def head(self, n: int = 5) -> DataFrame:
        """The first `n` rows. No call is made yet: `df.head(n).collect()` is one
        `Collect` of `df` with a limit, and the frame gets its own handle (a Head call)
        only when used for anything else. So an error the Head call would report (a
        dropped input) is raised there instead."""
        n = operator.index(n)
        if 0 <= n <= _MAX_ROWS:
            return DataFrame._head_of(self, "Head", n)
        return self._derive("Head", pb.HeadRequest(handle=self.handle, n=n))

    def tail(self, n: int = 5) -> DataFrame:
        return self._derive("Tail", pb.TailRequest(handle=self.handle, n=n))

    def limit(self, n: int = 5) -> DataFrame:
        """The first `n` rows, as `head` (and as lazily)."""
        n = operator.index(n)
        if 0 <= n <= _MAX_ROWS:
            return DataFrame._head_of(self, "Limit", n)
        return self._derive("Limit", pb.LimitRequest(handle=self.handle, n=n))

    def slice(self, offset: int, length: int | None = None) -> DataFrame:
        """`length` rows from `offset` (negative: from the end); every row to the end
        without a length."""
        request = pb.SliceRequest(handle=self.handle, offset=offset)
        if length is None:
            request.to_end = True
        else:
            request.length = length
        return self._derive("Slice", request)

    def group_by(self, *by: str | Expr | Sequence[str | Expr]) -> GroupBy:
        """`df.group_by("k").agg(pr.col("v").sum())`; groups keep their first-seen order."""
        return GroupBy(self, _flatten(by))

    def join(
        self,
        other: DataFrame,
        on: str | Sequence[str] | None = None,
        how: JoinHow = "inner",
        *,
        left_on: str | Sequence[str] | None = None,
        right_on: str | Sequence[str] | None = None,
        suffix: str = "_right",
        coalesce: bool = False,
    ) -> DataFrame:
        if how == "cross":
            return self._derive(
                "Cross",
                pb.CrossRequest(left_handle=self.handle, right_handle=other.handle, suffix=suffix),
            )
        request = pb.JoinRequest(
            left_handle=self.handle, right_handle=other.handle, suffix=suffix, coalesce=coalesce
        )
        how_value = _pick(_JOIN, how, "join type")
        if how in _JOIN_TYPE:
            request.join_type = _JOIN_TYPE[how]
        else:
            request.how = how_value
        if on is not None:
            request.on.columns.extend(_names([on]))
        if left_on is not None or right_on is not None:
            request.left_right.left.extend(_names([left_on]) if left_on is not None else [])
            request.left_right.right.extend(_names([right_on]) if right_on is not None else [])
        return self._derive("Join", request)

    def join_asof(
        self,
        other: DataFrame,
        *,
        on: str | None = None,
        left_on: str | None = None,
        right_on: str | None = None,
        by: str | Sequence[str] | None = None,
        strategy: Literal["backward", "forward", "nearest"] = "backward",
        tolerance: str | dt.timedelta | int | float | None = None,
        suffix: str = "_right",
    ) -> DataFrame:
        _pick({"backward": 0, "forward": 0, "nearest": 0}, strategy, "strategy")
        return self._derive(
            "AsofJoin",
            pb.AsofJoinRequest(
                left_handle=self.handle,
                right_handle=other.handle,
                on=on,
                left_on=left_on or "",
                right_on=right_on or "",
                by=_names([by]) if by is not None else [],
                strategy=strategy,
                tolerance=_duration(tolerance),
                suffix=suffix,
            ),
        )

    def pivot(
        self,
        on: str | Sequence[str],
        *,
        index: str | Sequence[str],
        values: str | Sequence[str],
        aggregate_function: str | None = None,
        sort_columns: bool = False,
    ) -> DataFrame:
        request = pb.PivotRequest(handle=self.handle, sort_columns=sort_columns)
        if aggregate_function is not None:
            request.aggregate = _pick(_AGG, aggregate_function, "aggregate")
        # One column each goes in the contract's fields, several in Polaroid's.
        for one, many, names in (("columns", "on_columns", on), ("index", "index_columns", index),
                                 ("values", "values_columns", values)):
            listed = _names([names])
            if len(listed) == 1:
                setattr(request, one, listed[0])
            else:
                getattr(request, many).extend(listed)
        return self._derive("Pivot", request)

    def unpivot(
        self,
        on: str | Sequence[str] | None = None,
        *,
        index: str | Sequence[str] | None = None,
        variable_name: str | None = None,
        value_name: str | None = None,
    ) -> DataFrame:
        return self._derive(
            "Melt",
            pb.MeltRequest(
                handle=self.handle,
                value_vars=_names([on]) if on is not None else [],
                id_vars=_names([index]) if index is not None else [],
                variable_name=variable_name,
                value_name=value_name,
            ),
        )

    melt = unpivot

    def fill_null(
        self, value: IntoExpr = None, *, strategy: str | None = None,
        columns: Sequence[str] = (), limit: int | None = None,
    ) -> DataFrame:
        """Nulls filled with `value` (a number, a string or any expression) or by
        `strategy` (forward, backward, min, max, mean, zero, one)."""
        request = pb.FillNullRequest(handle=self.handle, columns=list(columns), limit=limit)
        if strategy is not None:
            request.method = _pick(_FILL, strategy, "strategy")
        elif isinstance(value, bool) or not isinstance(value, (int, float, str)):
            request.fill_expr.CopyFrom(into_expr(value).pb)
        elif isinstance(value, int):
            request.value.int_val = value
        elif isinstance(value, float):
            request.value.float_val = value
        else:
            request.value.string_val = value
        return self._derive("FillNull", request)

    def fill_nan(
        self, value: IntoExpr = None, *, strategy: str | None = None, columns: Sequence[str] = ()
    ) -> DataFrame:
        """NaNs filled with `value` (a number or any expression) or by `strategy`
        (forward, backward, min, max, mean, zero, one: over values neither NaN nor null;
        a NaN with no value on its side stays NaN)."""
        request = pb.FillNanRequest(handle=self.handle, columns=list(columns))
        if strategy is not None:
            request.method = _pick(_FILL, strategy, "strategy")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            request.value = float(value)  # 0.0 is the unset value, and means 0.0
        else:
            request.fill_expr.CopyFrom(into_expr(value).pb)
        return self._derive("FillNan", request)

    def interpolate(self, columns: Sequence[str] = (), *, method: str = "linear") -> DataFrame:
        methods = {"linear": pb.INTERPOLATION_METHOD_LINEAR, "nearest": pb.INTERPOLATION_METHOD_NEAREST}
        return self._derive(
            "Interpolate",
            pb.InterpolateRequest(
                handle=self.handle, columns=list(columns), interpolation=_pick(methods, method, "method")
            ),
        )

    def shift(self, n: int = 1, *, columns: Sequence[str] = (), suffix: str | None = None) -> DataFrame:
        """Lag (`n > 0`) or lead (`n < 0`) columns by `n` rows (every column when none
        are named), into `<column><suffix>` when a suffix is given, else in place."""
        if n == 0:
            return self.clone()
        method, amount = ("Lag", n) if n > 0 else ("Lead", -n)
        message = pb.LagRequest if method == "Lag" else pb.LeadRequest
        if columns:
            request = message(
                handle=self.handle,
                columns=[
                    pb.LagColumn(column=c, periods=amount, alias=None if suffix is None else c + suffix)
                    for c in columns
                ],
            )
        else:
            request = message(handle=self.handle, every_column_periods=amount, suffix=suffix)
        return self._derive(method, request)

    def diff(self, n: int = 1, *, columns: Sequence[str] = (), suffix: str | None = None) -> DataFrame:
        return self._derive(
            "Diff", pb.DiffRequest(handle=self.handle, columns=list(columns), periods=n, suffix=suffix)
        )

    def pct_change(self, n: int = 1, *, columns: Sequence[str] = (), suffix: str | None = None) -> DataFrame:
        return self._derive(
            "PctChange",
            pb.PctChangeRequest(handle=self.handle, columns=list(columns), periods=n, suffix=suffix),
        )

    def rolling(
        self, columns: str | Sequence[str], *, function: str = "mean", window_size: int | None = None,
        period: str | None = None, time_column: str | None = None, min_periods: int | None = None,
        center: bool = False, suffix: str | None = None,
    ) -> DataFrame:
        """Rolling `function` (sum, mean, min, max, std, var, median) over `window_size`
        rows, or over a `period` ("2d") of `time_column` (or of a time series' timestamp
        column); new columns `<column><suffix>`, else in place. As in Polars, a row window
        needs `window_size` values unless `min_periods` says fewer."""
        functions = {
            "sum": expr_pb2.SUM, "mean": expr_pb2.MEAN, "min": expr_pb2.MIN,
            "max": expr_pb2.MAX, "std": expr_pb2.STD, "var": expr_pb2.VAR,
            "median": expr_pb2.MEDIAN,
        }
        if (window_size is None) == (period is None):
            raise ValueError("rolling needs one of window_size (rows) or period (a duration)")
        size = str(window_size) if window_size is not None else str(period)
        chosen = _pick(functions, function, "rolling function")
        aggregations = [
            pb.RollingAggregation(column=c, alias=f"{c}{suffix or ''}", function=chosen)
            for c in _names([columns])
        ]
        return self._derive(
            "RollingWindow",
            pb.RollingWindowRequest(
                handle=self.handle, window_size=size, aggregations=aggregations,
                time_column=time_column, min_periods=min_periods, center=center,
            ),
        )

    def as_time_series(
        self, time_column: str, *, by: Sequence[str] = (), frequency: str | None = None,
        sort: bool = True,
    ) -> DataFrame:
        """The rows as a time series of `time_column` (sorted by `by`, then time, unless
        `sort=False`), whose timestamp column and `frequency` resample and rolling use."""
        return self._derive(
            "AsTimeSeries",
            pb.AsTimeSeriesRequest(
                handle=self.handle, timestamp_column=time_column, frequency=frequency,
                ensure_sorted=sort, by=list(by),
            ),
        )

    def resample(
        self, time_column: str | None, every: str, *aggs: IntoExpr, by: Sequence[str] = (),
        period: str | None = None, offset: str | None = None,
    ) -> DataFrame:
        """Dynamic group-by on a time column: `df.resample("ts", "1h", pr.col("v").sum())`
        (`time_column` None: a time series' own)."""
        return self._derive(
            "Resample",
            pb.ResampleRequest(
                handle=self.handle, time_column=time_column, frequency=every, period=period,
                offset=offset, exprs=[into_expr(a).pb for a in aggs], by=list(by),
            ),
        )

    def describe(
        self, percentiles: Sequence[float] = (0.25, 0.5, 0.75), *, columns: Sequence[str] = ()
    ) -> DataFrame:
        """Summary statistics per column (of `columns`, else every one), as Polars'
        `DataFrame.describe` gives them."""
        return self._derive(
            "Describe",
            pb.DescribeRequest(handle=self.handle, columns=list(columns), percentiles=list(percentiles)),
        )

    def stats(self, columns: Sequence[str] = ()) -> DataFrame:
        """One row per column (of `columns`, else every one): column, dtype, count,
        null_count, n_unique, min and max (as text), mean and std (numeric and boolean
        columns)."""
        reply = self._connection.call(
            "GetStats", pb.GetStatsRequest(handle=self.handle, columns=list(columns))
        )
        return DataFrame(reply.handle, self._connection)

    def sql(self, query: str, *, table_name: str = "self") -> DataFrame:
        """Polars SQL over this frame, named `self` in the query."""
        return sql(query, {table_name: self}, connection=self._connection)

    def clone(self) -> DataFrame:
        return self._derive("Clone", pb.CloneRequest(handle=self.handle))

    # -- results ------------------------------------------------------------------------

    def to_arrow(self, *, limit: int | None = None, progress: bool = False) -> pa.Table:
        """The rows as a pyarrow Table (a progress bar with `progress=True`)."""
        handle, limit = self._limited(limit)
        if not progress:
            return self._connection.collect(handle, limit=limit)
        from tqdm.auto import tqdm

        with tqdm(unit=" rows", desc="collect") as bar:
            return self._connection.collect(handle, limit=limit, progress=bar.update)

    def collect(self, *, limit: int | None = None, progress: bool = False) -> polars.DataFrame:
        """The rows as a `polars.DataFrame`."""
        handle, limit = self._limited(limit)
        if not progress:
            return self._connection.collect_polars(handle, limit=limit)
        from tqdm.auto import tqdm

        with tqdm(unit=" rows", desc="collect") as bar:
            return self._connection.collect_polars(handle, limit=limit, progress=bar.update)

    def to_pandas(self, *, limit: int | None = None) -> pandas.DataFrame:
        return self.to_arrow(limit=limit).to_pandas()

    def _write(self, method: str, request: Any, append: bool) -> int:
        reply = self._connection.call(method, request, idempotent=not append)
        if not reply.success:
            raise errors.InternalError(reply.error or "write failed")
        return int(reply.rows_written)

    def write_parquet(self, path: str, *, compression: str | None = None, append: bool = False) -> int:
        """Writes on the server, under its data roots; returns the rows written."""
        return self._write(
            "WriteParquet",
            pb.WriteParquetRequest(handle=self.handle, path=path, compression=compression, append=append),
            append,
        )

    def write_csv(
        self, path: str, *, include_header: bool = True, separator: str | None = None, append: bool = False
    ) -> int:
        """A header line first, as Polars writes (an append to an existing file adds none)."""
        return self._write(
            "WriteCsv",
            pb.WriteCsvRequest(
                handle=self.handle, path=path, include_header=include_header, separator=separator, append=append
            ),
            append,
        )

    def write_ipc(self, path: str, *, compression: str | None = None, append: bool = False) -> int:
        return self._write(
            "WriteIpc",
            pb.WriteIpcRequest(handle=self.handle, path=path, compression=compression, append=append),
            append,
        )

    def persist(self) -> DataFrame:
        """Computes and stores the result, so any worker serves it at once, after restarts."""
        self._connection.call("Persist", pb.PersistRequest(handle=self.handle))
        return self

    def pin(self) -> DataFrame:
        """Keeps the handle past its TTL until `unpin`."""
        self._connection.call("Pin", pb.PinRequest(handle=self.handle))
        return self

    def unpin(self) -> DataFrame:
        self._connection.call("Unpin", pb.PinRequest(handle=self.handle))
        return self

    # -- notebooks ----------------------------------------------------------------------

    def _repr_html_(self) -> str:
        """Shape, schema and the first rows: 5 rows fetched when shown, and the row
        count only where the server knows it without computing the whole result."""
        shown = 5
        pending = self._pending
        if self._handle is not None:
            pending = None
        try:
            head = self.collect(limit=shown)
            if pending is not None and head.height < min(shown, pending.n):
                known: int | None = head.height  # The parent has no more rows.
            elif pending is not None and pending.n <= shown:
                known = pending.n
            else:
                # A pending head's rows are the parent's up to n: its own handle is not
                # made just to be shown.
                of = self.handle if pending is None else pending.parent.handle
                info = self._connection.call("GetHandleInfo", pb.HandleInfoRequest(handle=of))
                known = info.rows if info.HasField("rows") else None
                if known is not None and pending is not None:
                    known = min(known, pending.n)
        except errors.PolaroidError as error:
            return f"<pre>polaroid.DataFrame {html.escape(self._label())}: {html.escape(str(error))}</pre>"
        rows = "?" if known is None else str(known)
        table = head._repr_html_() if hasattr(head, "_repr_html_") else html.escape(str(head))
        schema = ", ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in head.schema.items())
        return (
            f"<div><small>polaroid.DataFrame, shape ({rows}, {head.width}); {schema}</small>"
            f"{table}</div>"
        )


class GroupBy:
    """The groups of a frame, awaiting `agg`."""

    def __init__(self, frame: DataFrame, by: list[Any]) -> None:
        self._frame = frame
        # Names alone go as names; with any expression, all go as expressions, in order.
        if all(isinstance(k, str) for k in by):
            self._names, self._exprs = [str(k) for k in by], []
        else:
            self._names = []
            self._exprs = [into_expr(k, str_as_column=True).pb for k in by]

    def agg(self, *aggs: IntoExpr | Sequence[IntoExpr], **named: IntoExpr) -> DataFrame:
        items = [into_expr(a, str_as_column=True) for a in _flatten(aggs)]
        items += [into_expr(v, str_as_column=True).alias(k) for k, v in named.items()]
        return self._frame._derive(
            "GroupBy",
            pb.GroupByRequest(
                handle=self._frame.handle,
                columns=self._names,
                by_exprs=self._exprs,
                aggs=[i.pb for i in items],
                maintain_order=True,
            ),
        )


def _connection(connection: Connection | None) -> Connection:
    return connection if connection is not None else default_connection()


def _read(method: str, request: Any, connection: Connection | None) -> DataFrame:
    conn = _connection(connection)
    reply = conn.call(method, request)
    if reply.error:
        raise errors.InvalidArgumentError(reply.error)
    return DataFrame(reply.handle, conn)


def read_parquet(
    path: str, *, columns: Sequence[str] = (), n_rows: int | None = None,
    connection: Connection | None = None,
) -> DataFrame:
    """A Parquet file under the server's data roots."""
    return _read(
        "ReadParquet", pb.ReadParquetRequest(path=path, columns=list(columns), n_rows=n_rows), connection
    )


def read_csv(
    path: str, *, has_header: bool = True, separator: str = ",", skip_rows: int | None = None,
    n_rows: int | None = None, columns: Sequence[str] = (), try_parse_dates: bool = False,
    connection: Connection | None = None,
) -> DataFrame:
    return _read(
        "ReadCsv",
        pb.ReadCsvRequest(
            path=path, has_header=has_header, separator=separator, skip_rows=skip_rows,
            n_rows=n_rows, columns=list(columns), try_parse_dates=try_parse_dates,
        ),
        connection,
    )


def read_ipc(path: str, *, columns: Sequence[str] = (), n_rows: int | None = None,
             connection: Connection | None = None) -> DataFrame:
    return _read("ReadIpc", pb.ReadIpcRequest(path=path, columns=list(columns), n_rows=n_rows), connection)


def read_json(path: str, *, n_rows: int | None = None, connection: Connection | None = None) -> DataFrame:
    """JSON (an array of records) or NDJSON (`.ndjson`, `.jsonl`)."""
    return _read("ReadJson", pb.ReadJsonRequest(path=path, n_rows=n_rows), connection)


def read_rest_api(url: str, *, connection: Connection | None = None, **kwargs: Any) -> DataFrame:
    """Records fetched by the server over HTTP, every page, once: a JSON array (under
    `records_path` if given), or with `format=` "ndjson", "csv", "arrow" or "msgpack".
    Arguments as `polaroid.streams.rest_request` (schema, pagination, rate_limit, ...)."""
    from polaroid.streams import rest_request

    return _read("ReadRestApi", rest_request(url, **kwargs), connection)


def from_arrow(table: pa.Table | pa.RecordBatch, *, name: str | None = None, progress: bool = False,
               connection: Connection | None = None) -> DataFrame:
    """Uploads an Arrow table, streamed in chunks (no message-size limit)."""
    conn = _connection(connection)
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if progress:
        from tqdm.auto import tqdm

        with tqdm(unit="B", unit_scale=True, desc="upload") as bar:
            handle = conn.upload(table, name=name, progress=bar.update)
    else:
        handle = conn.upload(table, name=name)
    return DataFrame(handle, conn)


def from_polars(df: polars.DataFrame, **kwargs: Any) -> DataFrame:
    return from_arrow(df.to_arrow(), **kwargs)


def from_pandas(df: pandas.DataFrame, **kwargs: Any) -> DataFrame:
    return from_arrow(pa.Table.from_pandas(df, preserve_index=False), **kwargs)


def from_dict(data: Mapping[str, Sequence[Any]], **kwargs: Any) -> DataFrame:
    return from_arrow(pa.table(dict(data)), **kwargs)


def sql(query: str, tables: Mapping[str, DataFrame], *, connection: Connection | None = None) -> DataFrame:
    """Polars SQL over named frames: `pr.sql("SELECT * FROM t", {"t": df})`."""
    conn = connection or next(iter(tables.values()))._connection
    return _read(
        "Sql", pb.SqlRequest(query=query, tables={k: v.handle for k, v in tables.items()}), conn
    )
