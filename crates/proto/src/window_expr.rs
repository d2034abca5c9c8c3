//! `WindowExpr`, encoded by hand because two shapes share its field numbers: the
//! established contract's (`window_size` = 2 and `min_periods` = 3, integers) and the one
//! Polaroid's stored plans were written in before it (`partition_by` = 2 and `rolling` = 3,
//! messages; today's `OverExpr`). A generated type would refuse the old shape's wire type
//! and, with it, the whole stored plan. Here the wire type tells them apart, and an old
//! window encodes back to the bytes it was read from, so the plan's id (the hash of its
//! encoding) still names it. Which shape a window means, and whether it mixes both, is the
//! engine's to judge (`polaroid_worker::legacy`).

use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, int64, message, skip_field};
use prost::{DecodeError, Message};

use crate::v1::{Expression, RollingSpec};

const EXPR_TAG: u32 = 1;
const WINDOW_SIZE_TAG: u32 = 2;
const MIN_PERIODS_TAG: u32 = 3;

/// The contract's window (`expr`, `window_size`, `min_periods`), or a window of a plan
/// stored before the contract (`expr`, `partition_by_v0`, `rolling_v0`).
#[derive(Clone, PartialEq, Default, Debug)]
pub struct WindowExpr {
    /// Field 1, in both shapes.
    pub expr: Option<Box<Expression>>,
    /// Field 2 as an integer (the contract's): the rows of the window; 0 is unset.
    pub window_size: i64,
    /// Field 3 as an integer (the contract's).
    pub min_periods: Option<i64>,
    /// Field 2 as messages: a stored window's partitions (today's `OverExpr.partition_by`).
    pub partition_by_v0: Vec<Expression>,
    /// Field 3 as a message: a stored window's rolling spec (today's `OverExpr.rolling`).
    pub rolling_v0: Option<RollingSpec>,
}

impl WindowExpr {
    /// Whether it holds any field of the shape from before the contract.
    pub fn has_v0_fields(&self) -> bool {
        !self.partition_by_v0.is_empty() || self.rolling_v0.is_some()
    }

    /// Whether it holds any field of the contract's shape besides `expr`.
    pub fn has_contract_fields(&self) -> bool {
        self.window_size != 0 || self.min_periods.is_some()
    }
}

impl Message for WindowExpr {
    // Fields in number order, and within a number the contract's integer first: an old
    // window (messages only) comes out as prost encoded it, a contract one (integers only)
    // as any protobuf encoder does.
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(expr) = &self.expr {
            message::encode(EXPR_TAG, &**expr, buf);
        }
        if self.window_size != 0 {
            int64::encode(WINDOW_SIZE_TAG, &self.window_size, buf);
        }
        message::encode_repeated(WINDOW_SIZE_TAG, &self.partition_by_v0, buf);
        if let Some(min_periods) = &self.min_periods {
            int64::encode(MIN_PERIODS_TAG, min_periods, buf);
        }
        if let Some(rolling) = &self.rolling_v0 {
            message::encode(MIN_PERIODS_TAG, rolling, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let (result, field) = match (tag, wire_type) {
            (EXPR_TAG, _) => (
                message::merge(
                    wire_type,
                    self.expr.get_or_insert_with(Box::default).as_mut(),
                    buf,
                    ctx,
                ),
                "expr",
            ),
            (WINDOW_SIZE_TAG, WireType::LengthDelimited) => (
                message::merge_repeated(wire_type, &mut self.partition_by_v0, buf, ctx),
                "partition_by",
            ),
            (WINDOW_SIZE_TAG, _) => (
                int64::merge(wire_type, &mut self.window_size, buf, ctx),
                "window_size",
            ),
            (MIN_PERIODS_TAG, WireType::LengthDelimited) => (
                message::merge(
                    wire_type,
                    self.rolling_v0.get_or_insert_with(RollingSpec::default),
                    buf,
                    ctx,
                ),
                "rolling",
            ),
            (MIN_PERIODS_TAG, _) => (
                int64::merge(wire_type, self.min_periods.get_or_insert(0), buf, ctx),
                "min_periods",
            ),
            // Fields of newer versions.
            _ => return skip_field(wire_type, tag, buf, ctx),
        };
        result.map_err(|mut error| {
            error.push("WindowExpr", field);
            error
        })
    }

    fn encoded_len(&self) -> usize {
        self.expr
            .as_ref()
            .map_or(0, |expr| message::encoded_len(EXPR_TAG, &**expr))
            + if self.window_size != 0 {
                int64::encoded_len(WINDOW_SIZE_TAG, &self.window_size)
            } else {
                0
            }
            + message::encoded_len_repeated(WINDOW_SIZE_TAG, &self.partition_by_v0)
            + self
                .min_periods
                .as_ref()
                .map_or(0, |m| int64::encoded_len(MIN_PERIODS_TAG, m))
            + self
                .rolling_v0
                .as_ref()
                .map_or(0, |r| message::encoded_len(MIN_PERIODS_TAG, r))
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{ColumnExpr, expression::Kind};

    /// What prost derives for the contract's message (seed.proto).
    #[derive(Clone, PartialEq, ::prost::Message)]
    struct Contract {
        #[prost(message, optional, boxed, tag = "1")]
        expr: Option<Box<Expression>>,
        #[prost(int64, tag = "2")]
        window_size: i64,
        #[prost(int64, optional, tag = "3")]
        min_periods: Option<i64>,
    }

    /// What prost derived for the message before the contract.
    #[derive(Clone, PartialEq, ::prost::Message)]
    struct Before {
        #[prost(message, optional, boxed, tag = "1")]
        expr: Option<Box<Expression>>,
        #[prost(message, repeated, tag = "2")]
        partition_by: Vec<Expression>,
        #[prost(message, optional, tag = "3")]
        rolling: Option<RollingSpec>,
    }

    fn column(name: &str) -> Expression {
        Expression {
            kind: Some(Kind::Column(ColumnExpr { name: name.into() })),
        }
    }

    #[test]
    fn the_contracts_shape_reads_and_writes_as_generated_code_does() {
        for (window_size, min_periods) in [(3, Some(2)), (0, None), (-1, Some(0)), (7, None)] {
            let contract = Contract {
                expr: Some(Box::new(column("v"))),
                window_size,
                min_periods,
            };
            let bytes = contract.encode_to_vec();
            let ours = WindowExpr::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(ours.window_size, window_size);
            assert_eq!(ours.min_periods, min_periods);
            assert_eq!(ours.expr.as_deref(), Some(&column("v")));
            assert!(!ours.has_v0_fields());
            assert_eq!(ours.encode_to_vec(), bytes);
            assert_eq!(ours.encoded_len(), bytes.len());
        }
    }

    #[test]
    fn the_old_shape_reads_and_writes_back_the_same_bytes() {
        let rolling = RollingSpec {
            function: 1,
            window_size: Some(2),
            ..Default::default()
        };
        for before in [
            Before {
                expr: Some(Box::new(column("v"))),
                partition_by: vec![column("g"), column("h")],
                rolling: None,
            },
            Before {
                expr: Some(Box::new(column("v"))),
                partition_by: vec![],
                rolling: Some(rolling.clone()),
            },
            // An empty rolling spec and an empty partition are still the old shape.
            Before {
                expr: None,
                partition_by: vec![Expression::default()],
                rolling: Some(RollingSpec::default()),
            },
        ] {
            let bytes = before.encode_to_vec();
            let ours = WindowExpr::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(ours.partition_by_v0, before.partition_by);
            assert_eq!(ours.rolling_v0, before.rolling);
            assert!(ours.has_v0_fields() && !ours.has_contract_fields());
            assert_eq!(ours.encode_to_vec(), bytes, "re-encodes as stored");
            assert_eq!(ours.encoded_len(), bytes.len());
        }
    }

    #[test]
    fn a_field_of_neither_wire_type_is_a_decode_error() {
        // Field 2 as a fixed64.
        let bytes = [0x11, 0, 0, 0, 0, 0, 0, 0, 0];
        let error = WindowExpr::decode(&bytes[..]).expect_err("not a window");
        assert!(error.to_string().contains("window_size"), "{error}");
        // Unknown fields are skipped, as in any protobuf message.
        let ours = WindowExpr::decode(&[0x20, 1][..]).expect("field 4 skipped");
        assert_eq!(ours, WindowExpr::default());
    }
}
