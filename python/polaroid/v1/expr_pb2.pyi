from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TimeUnit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_UNIT_UNSPECIFIED: _ClassVar[TimeUnit]
    TIME_UNIT_NANOSECONDS: _ClassVar[TimeUnit]
    TIME_UNIT_MICROSECONDS: _ClassVar[TimeUnit]
    TIME_UNIT_MILLISECONDS: _ClassVar[TimeUnit]

class BinaryOperator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BINARY_OPERATOR_UNSPECIFIED: _ClassVar[BinaryOperator]
    EQ: _ClassVar[BinaryOperator]
    NEQ: _ClassVar[BinaryOperator]
    LT: _ClassVar[BinaryOperator]
    LTE: _ClassVar[BinaryOperator]
    GT: _ClassVar[BinaryOperator]
    GTE: _ClassVar[BinaryOperator]
    PLUS: _ClassVar[BinaryOperator]
    MINUS: _ClassVar[BinaryOperator]
    MULTIPLY: _ClassVar[BinaryOperator]
    DIVIDE: _ClassVar[BinaryOperator]
    MODULO: _ClassVar[BinaryOperator]
    AND: _ClassVar[BinaryOperator]
    OR: _ClassVar[BinaryOperator]

class UnaryOperator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNARY_OPERATOR_UNSPECIFIED: _ClassVar[UnaryOperator]
    NOT: _ClassVar[UnaryOperator]
    NEGATE: _ClassVar[UnaryOperator]
    IS_NULL: _ClassVar[UnaryOperator]
    IS_NOT_NULL: _ClassVar[UnaryOperator]
    ABS: _ClassVar[UnaryOperator]

class AggFunction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGG_FUNCTION_UNSPECIFIED: _ClassVar[AggFunction]
    SUM: _ClassVar[AggFunction]
    MIN: _ClassVar[AggFunction]
    MAX: _ClassVar[AggFunction]
    MEAN: _ClassVar[AggFunction]
    MEDIAN: _ClassVar[AggFunction]
    STD: _ClassVar[AggFunction]
    VAR: _ClassVar[AggFunction]
    COUNT: _ClassVar[AggFunction]
    FIRST: _ClassVar[AggFunction]
    LAST: _ClassVar[AggFunction]
    N_UNIQUE: _ClassVar[AggFunction]
    QUANTILE: _ClassVar[AggFunction]

class RollingFunction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLING_FUNCTION_UNSPECIFIED: _ClassVar[RollingFunction]
    ROLLING_FUNCTION_SUM: _ClassVar[RollingFunction]
    ROLLING_FUNCTION_MEAN: _ClassVar[RollingFunction]
    ROLLING_FUNCTION_MIN: _ClassVar[RollingFunction]
    ROLLING_FUNCTION_MAX: _ClassVar[RollingFunction]
    ROLLING_FUNCTION_STD: _ClassVar[RollingFunction]
    ROLLING_FUNCTION_VAR: _ClassVar[RollingFunction]
    ROLLING_FUNCTION_MEDIAN: _ClassVar[RollingFunction]
TIME_UNIT_UNSPECIFIED: TimeUnit
TIME_UNIT_NANOSECONDS: TimeUnit
TIME_UNIT_MICROSECONDS: TimeUnit
TIME_UNIT_MILLISECONDS: TimeUnit
BINARY_OPERATOR_UNSPECIFIED: BinaryOperator
EQ: BinaryOperator
NEQ: BinaryOperator
LT: BinaryOperator
LTE: BinaryOperator
GT: BinaryOperator
GTE: BinaryOperator
PLUS: BinaryOperator
MINUS: BinaryOperator
MULTIPLY: BinaryOperator
DIVIDE: BinaryOperator
MODULO: BinaryOperator
AND: BinaryOperator
OR: BinaryOperator
UNARY_OPERATOR_UNSPECIFIED: UnaryOperator
NOT: UnaryOperator
NEGATE: UnaryOperator
IS_NULL: UnaryOperator
IS_NOT_NULL: UnaryOperator
ABS: UnaryOperator
AGG_FUNCTION_UNSPECIFIED: AggFunction
SUM: AggFunction
MIN: AggFunction
MAX: AggFunction
MEAN: AggFunction
MEDIAN: AggFunction
STD: AggFunction
VAR: AggFunction
COUNT: AggFunction
FIRST: AggFunction
LAST: AggFunction
N_UNIQUE: AggFunction
QUANTILE: AggFunction
ROLLING_FUNCTION_UNSPECIFIED: RollingFunction
ROLLING_FUNCTION_SUM: RollingFunction
ROLLING_FUNCTION_MEAN: RollingFunction
ROLLING_FUNCTION_MIN: RollingFunction
ROLLING_FUNCTION_MAX: RollingFunction
ROLLING_FUNCTION_STD: RollingFunction
ROLLING_FUNCTION_VAR: RollingFunction
ROLLING_FUNCTION_MEDIAN: RollingFunction

class Expression(_message.Message):
    __slots__ = ("column", "literal", "binary", "unary", "function", "aggregation", "window", "case_expr", "cast", "over")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    LITERAL_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    UNARY_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    CASE_EXPR_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    OVER_FIELD_NUMBER: _ClassVar[int]
    column: ColumnExpr
    literal: LiteralExpr
    binary: BinaryExpr
    unary: UnaryExpr
    function: FunctionExpr
    aggregation: AggregationExpr
    window: WindowExpr
    case_expr: CaseExpr
    cast: CastExpr
    over: OverExpr
    def __init__(self, column: _Optional[_Union[ColumnExpr, _Mapping]] = ..., literal: _Optional[_Union[LiteralExpr, _Mapping]] = ..., binary: _Optional[_Union[BinaryExpr, _Mapping]] = ..., unary: _Optional[_Union[UnaryExpr, _Mapping]] = ..., function: _Optional[_Union[FunctionExpr, _Mapping]] = ..., aggregation: _Optional[_Union[AggregationExpr, _Mapping]] = ..., window: _Optional[_Union[WindowExpr, _Mapping]] = ..., case_expr: _Optional[_Union[CaseExpr, _Mapping]] = ..., cast: _Optional[_Union[CastExpr, _Mapping]] = ..., over: _Optional[_Union[OverExpr, _Mapping]] = ...) -> None: ...

class ColumnExpr(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DatetimeLiteral(_message.Message):
    __slots__ = ("value", "unit", "time_zone")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    value: int
    unit: TimeUnit
    time_zone: str
    def __init__(self, value: _Optional[int] = ..., unit: _Optional[_Union[TimeUnit, str]] = ..., time_zone: _Optional[str] = ...) -> None: ...

class DurationLiteral(_message.Message):
    __slots__ = ("value", "unit")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    value: int
    unit: TimeUnit
    def __init__(self, value: _Optional[int] = ..., unit: _Optional[_Union[TimeUnit, str]] = ...) -> None: ...

class LiteralList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[LiteralExpr]
    def __init__(self, values: _Optional[_Iterable[_Union[LiteralExpr, _Mapping]]] = ...) -> None: ...

class NullLiteral(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LiteralExpr(_message.Message):
    __slots__ = ("int_val", "float_val", "string_val", "bool_val", "bytes_val", "null_val", "date_val", "datetime_val", "duration_val", "list_val")
    INT_VAL_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VAL_FIELD_NUMBER: _ClassVar[int]
    STRING_VAL_FIELD_NUMBER: _ClassVar[int]
    BOOL_VAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_VAL_FIELD_NUMBER: _ClassVar[int]
    NULL_VAL_FIELD_NUMBER: _ClassVar[int]
    DATE_VAL_FIELD_NUMBER: _ClassVar[int]
    DATETIME_VAL_FIELD_NUMBER: _ClassVar[int]
    DURATION_VAL_FIELD_NUMBER: _ClassVar[int]
    LIST_VAL_FIELD_NUMBER: _ClassVar[int]
    int_val: int
    float_val: float
    string_val: str
    bool_val: bool
    bytes_val: bytes
    null_val: NullLiteral
    date_val: int
    datetime_val: DatetimeLiteral
    duration_val: DurationLiteral
    list_val: LiteralList
    def __init__(self, int_val: _Optional[int] = ..., float_val: _Optional[float] = ..., string_val: _Optional[str] = ..., bool_val: _Optional[bool] = ..., bytes_val: _Optional[bytes] = ..., null_val: _Optional[_Union[NullLiteral, _Mapping]] = ..., date_val: _Optional[int] = ..., datetime_val: _Optional[_Union[DatetimeLiteral, _Mapping]] = ..., duration_val: _Optional[_Union[DurationLiteral, _Mapping]] = ..., list_val: _Optional[_Union[LiteralList, _Mapping]] = ...) -> None: ...

class BinaryExpr(_message.Message):
    __slots__ = ("left", "op", "right")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    left: Expression
    op: BinaryOperator
    right: Expression
    def __init__(self, left: _Optional[_Union[Expression, _Mapping]] = ..., op: _Optional[_Union[BinaryOperator, str]] = ..., right: _Optional[_Union[Expression, _Mapping]] = ...) -> None: ...

class UnaryExpr(_message.Message):
    __slots__ = ("op", "expr")
    OP_FIELD_NUMBER: _ClassVar[int]
    EXPR_FIELD_NUMBER: _ClassVar[int]
    op: UnaryOperator
    expr: Expression
    def __init__(self, op: _Optional[_Union[UnaryOperator, str]] = ..., expr: _Optional[_Union[Expression, _Mapping]] = ...) -> None: ...

class FunctionExpr(_message.Message):
    __slots__ = ("name", "args")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    args: _containers.RepeatedCompositeFieldContainer[Expression]
    def __init__(self, name: _Optional[str] = ..., args: _Optional[_Iterable[_Union[Expression, _Mapping]]] = ...) -> None: ...

class AggregationExpr(_message.Message):
    __slots__ = ("function", "expr", "quantile")
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    EXPR_FIELD_NUMBER: _ClassVar[int]
    QUANTILE_FIELD_NUMBER: _ClassVar[int]
    function: AggFunction
    expr: Expression
    quantile: float
    def __init__(self, function: _Optional[_Union[AggFunction, str]] = ..., expr: _Optional[_Union[Expression, _Mapping]] = ..., quantile: _Optional[float] = ...) -> None: ...

class RollingSpec(_message.Message):
    __slots__ = ("function", "window_size", "period", "time_column", "min_periods", "center")
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    TIME_COLUMN_FIELD_NUMBER: _ClassVar[int]
    MIN_PERIODS_FIELD_NUMBER: _ClassVar[int]
    CENTER_FIELD_NUMBER: _ClassVar[int]
    function: RollingFunction
    window_size: int
    period: str
    time_column: str
    min_periods: int
    center: bool
    def __init__(self, function: _Optional[_Union[RollingFunction, str]] = ..., window_size: _Optional[int] = ..., period: _Optional[str] = ..., time_column: _Optional[str] = ..., min_periods: _Optional[int] = ..., center: _Optional[bool] = ...) -> None: ...

class WindowExpr(_message.Message):
    __slots__ = ("expr", "window_size", "min_periods")
    EXPR_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_PERIODS_FIELD_NUMBER: _ClassVar[int]
    expr: Expression
    window_size: int
    min_periods: int
    def __init__(self, expr: _Optional[_Union[Expression, _Mapping]] = ..., window_size: _Optional[int] = ..., min_periods: _Optional[int] = ...) -> None: ...

class OverExpr(_message.Message):
    __slots__ = ("expr", "partition_by", "rolling")
    EXPR_FIELD_NUMBER: _ClassVar[int]
    PARTITION_BY_FIELD_NUMBER: _ClassVar[int]
    ROLLING_FIELD_NUMBER: _ClassVar[int]
    expr: Expression
    partition_by: _containers.RepeatedCompositeFieldContainer[Expression]
    rolling: RollingSpec
    def __init__(self, expr: _Optional[_Union[Expression, _Mapping]] = ..., partition_by: _Optional[_Iterable[_Union[Expression, _Mapping]]] = ..., rolling: _Optional[_Union[RollingSpec, _Mapping]] = ...) -> None: ...

class WhenThen(_message.Message):
    __slots__ = ("when", "then")
    WHEN_FIELD_NUMBER: _ClassVar[int]
    THEN_FIELD_NUMBER: _ClassVar[int]
    when: Expression
    then: Expression
    def __init__(self, when: _Optional[_Union[Expression, _Mapping]] = ..., then: _Optional[_Union[Expression, _Mapping]] = ...) -> None: ...

class CaseExpr(_message.Message):
    __slots__ = ("when_then", "otherwise")
    WHEN_THEN_FIELD_NUMBER: _ClassVar[int]
    OTHERWISE_FIELD_NUMBER: _ClassVar[int]
    when_then: _containers.RepeatedCompositeFieldContainer[WhenThen]
    otherwise: Expression
    def __init__(self, when_then: _Optional[_Iterable[_Union[WhenThen, _Mapping]]] = ..., otherwise: _Optional[_Union[Expression, _Mapping]] = ...) -> None: ...

class CastExpr(_message.Message):
    __slots__ = ("expr", "data_type", "strict")
    EXPR_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    expr: Expression
    data_type: str
    strict: bool
    def __init__(self, expr: _Optional[_Union[Expression, _Mapping]] = ..., data_type: _Optional[str] = ..., strict: _Optional[bool] = ...) -> None: ...
