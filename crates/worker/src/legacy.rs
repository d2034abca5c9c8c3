//! Plan steps stored in the shapes requests had before the established contract (issue 23),
//! converted to today's shapes.
//!
//! Why: a handle's plan is its requests (`PlanStep`), and records written by older workers
//! (handle and plan records in the store, jobs waiting in a queue) hold the old shapes.
//! Those records must keep meaning what they meant: each old shape is decoded under its old
//! tag as a `*StepV0` message (plan.proto) and converted here, once, when a worker loads a
//! plan or takes a job, so the planner only ever sees today's shapes. The stored bytes are
//! left as they are: a plan's id is the hash of its encoding, and rewriting a record would
//! change what its id names.

use polaroid_proto::v1::{self as pb, plan_step::Op};

use crate::error::{EngineError, EngineResult};

/// Whether `op` is a step in a shape from before the contract.
pub fn is_legacy(op: &Op) -> bool {
    matches!(
        op,
        Op::WithColumnsV0(_)
            | Op::SortV0(_)
            | Op::UniqueV0(_)
            | Op::SliceV0(_)
            | Op::DiffV0(_)
            | Op::PctChangeV0(_)
            | Op::InterpolateV0(_)
    )
}

/// The step `op` in today's shape, with the meaning it had when it was recorded; any other
/// step as it is. A legacy step that could never have been recorded (sort flags that fit
/// no key count) is INVALID_ARGUMENT.
pub fn upgrade(op: Op) -> EngineResult<Op> {
    Ok(match op {
        Op::WithColumnsV0(old) => Op::WithColumns(pb::WithColumnsRequest {
            handle: old.handle,
            columns: Default::default(),
            exprs: old.exprs,
        }),
        Op::SortV0(old) => {
            let keys = old.by.len() + old.by_exprs.len();
            let descending = per_key(&old.descending, keys, "descending")?;
            let nulls_last = per_key(&old.nulls_last, keys, "nulls_last")?;
            let mut flags = descending.into_iter().zip(nulls_last);
            let columns = old
                .by
                .into_iter()
                .zip(flags.by_ref())
                .map(|(name, (descending, nulls_last))| pb::SortColumn {
                    name,
                    descending,
                    nulls_last,
                })
                .collect();
            let exprs = old
                .by_exprs
                .into_iter()
                .zip(flags)
                .map(|(expr, (descending, nulls_last))| pb::SortExpr {
                    expr: Some(expr),
                    descending,
                    nulls_last,
                })
                .collect();
            Op::Sort(pb::SortRequest {
                handle: old.handle,
                columns,
                exprs,
                maintain_order: old.maintain_order,
            })
        }
        Op::UniqueV0(old) => {
            // UNSPECIFIED meant "any"; today it means "not set" (keep_first decides).
            let keep = match old.keep() {
                pb::UniqueKeep::Unspecified => pb::UniqueKeep::Any,
                keep => keep,
            };
            Op::Unique(pb::UniqueRequest {
                handle: old.handle,
                subset: old.subset,
                keep_first: false,
                keep: keep as i32,
                maintain_order: old.maintain_order,
            })
        }
        Op::SliceV0(old) => Op::Slice(pb::SliceRequest {
            handle: old.handle,
            offset: old.offset,
            length: old.length.unwrap_or(0),
            to_end: old.length.is_none(),
        }),
        Op::DiffV0(old) => Op::Diff(pb::DiffRequest {
            handle: old.handle,
            columns: old.columns,
            periods: periods(old.n),
            suffix: old.suffix,
        }),
        Op::PctChangeV0(old) => Op::PctChange(pb::PctChangeRequest {
            handle: old.handle,
            columns: old.columns,
            periods: periods(old.n),
            suffix: old.suffix,
        }),
        Op::InterpolateV0(old) => {
            let method = match old.method() {
                pb::InterpolationMethod::Nearest => pb::InterpolationMethod::Nearest,
                pb::InterpolationMethod::Linear | pb::InterpolationMethod::Unspecified => {
                    pb::InterpolationMethod::Linear
                }
            };
            Op::Interpolate(pb::InterpolateRequest {
                handle: old.handle,
                method: String::new(),
                columns: old.columns,
                interpolation: method as i32,
            })
        }
        op => op,
    })
}

/// A plan step with its operation upgraded (see [`upgrade`]).
pub fn upgrade_step(step: pb::PlanStep) -> EngineResult<pb::PlanStep> {
    Ok(pb::PlanStep {
        op: step.op.map(upgrade).transpose()?,
    })
}

/// An old `n` of 0 meant one period.
fn periods(n: i64) -> i64 {
    if n == 0 { 1 } else { n }
}

/// An old sort flag list: one value per key, or one for every key, or none (false).
fn per_key(flags: &[bool], keys: usize, what: &str) -> EngineResult<Vec<bool>> {
    match flags.len() {
        0 => Ok(vec![false; keys]),
        1 => Ok(vec![flags[0]; keys]),
        n if n == keys => Ok(flags.to_vec()),
        n => Err(EngineError::invalid(format!(
            "a stored sort step has {n} `{what}` values for {keys} keys"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polaroid_proto::v1::{PlanNode, expression::Kind};
    use prost::Message;

    /// PlanNodes as the code before the contract encoded them: written with the Python
    /// stubs generated from the .proto files at 8eb1a70 (`PlanNode.SerializeToString`),
    /// each over input plan "pp…p" (and "qq…q", the cross join's right).
    const OLD_RECORDS: &[(&str, &str)] = &[
        (
            "sort",
            "0a158201121201621a0101220101280132050a030a0161124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "unique",
            "0a0a8a010712016118022001124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "with_columns",
            "0a226a2012172a150a05616c69617312050a030a0161120512031a016312050a030a0162124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "slice_to_end",
            "0a05aa01021001124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "slice_empty",
            "0a07aa010410021800124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "diff",
            "0a069a0203120161124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "pct_change",
            "0a0ea2020b120161180222045f706374124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "interpolate",
            "0a08c202051201611802124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "melt",
            "0a0fca010c120269641a01612203766172124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "cross",
            "0a07da01041a025f72124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070124071717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171",
        ),
    ];

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// The old record `name`, decoded by today's code, its step upgraded.
    fn loaded(name: &str) -> (Op, PlanNode) {
        let (_, hex) = OLD_RECORDS
            .iter()
            .find(|(n, _)| *n == name)
            .expect("a fixture");
        let bytes = unhex(hex);
        let node = PlanNode::decode(bytes.as_slice()).expect("an old record decodes");
        assert_eq!(node.inputs[0], "p".repeat(64), "{name}: inputs as written");
        // Encoded again, the record is the same bytes, so it has the same plan id (a
        // replay finds its nodes by the ids their users recorded).
        assert_eq!(node.encode_to_vec(), bytes, "{name}: re-encodes as stored");
        let op = node.step.clone().and_then(|s| s.op).expect("a step");
        (upgrade(op).expect("upgrades"), node)
    }

    fn column(name: &str) -> pb::Expression {
        pb::Expression {
            kind: Some(Kind::Column(pb::ColumnExpr { name: name.into() })),
        }
    }

    #[test]
    fn old_sort_records_keep_their_keys_and_flags() {
        let (op, node) = loaded("sort");
        assert!(is_legacy(
            node.step.and_then(|s| s.op).as_ref().expect("op")
        ));
        let Op::Sort(sort) = op else { panic!("{op:?}") };
        // by = ["b"], by_exprs = [col("a")], one descending and one nulls_last for both.
        assert_eq!(
            sort.columns,
            vec![pb::SortColumn {
                name: "b".into(),
                descending: true,
                nulls_last: true
            }]
        );
        assert_eq!(
            sort.exprs,
            vec![pb::SortExpr {
                expr: Some(column("a")),
                descending: true,
                nulls_last: true
            }]
        );
        assert!(sort.maintain_order);
    }

    #[test]
    fn old_unique_records_keep_their_strategy() {
        let Op::Unique(unique) = loaded("unique").0 else {
            panic!("not unique")
        };
        assert_eq!(unique.subset, ["a"]);
        assert_eq!(unique.keep(), pb::UniqueKeep::Last);
        assert!(!unique.keep_first);
        // UNSPECIFIED meant any: today it would mean "keep_first decides" (the last row).
        let any = upgrade(Op::UniqueV0(pb::UniqueStepV0::default())).expect("upgrades");
        assert!(matches!(any, Op::Unique(u) if u.keep() == pb::UniqueKeep::Any));
    }

    #[test]
    fn old_with_columns_records_keep_their_expressions_in_order() {
        let Op::WithColumns(with) = loaded("with_columns").0 else {
            panic!("not with_columns")
        };
        assert!(with.columns.is_empty());
        assert_eq!(with.exprs.len(), 2);
        assert_eq!(with.exprs[1], column("b"));
    }

    #[test]
    fn an_old_slice_without_a_length_runs_to_the_end() {
        let Op::Slice(to_end) = loaded("slice_to_end").0 else {
            panic!("not slice")
        };
        assert_eq!((to_end.offset, to_end.length, to_end.to_end), (1, 0, true));
        // A length of 0 that was set meant no rows, as it does today.
        let Op::Slice(empty) = loaded("slice_empty").0 else {
            panic!("not slice")
        };
        assert_eq!((empty.offset, empty.length, empty.to_end), (2, 0, false));
    }

    #[test]
    fn old_diff_and_pct_change_records_keep_their_periods() {
        // n unset (0) meant 1 period; today 0 means 0.
        let Op::Diff(diff) = loaded("diff").0 else {
            panic!("not diff")
        };
        assert_eq!(
            (diff.columns.as_slice(), diff.periods),
            (&["a".to_owned()][..], 1)
        );
        let Op::PctChange(pct) = loaded("pct_change").0 else {
            panic!("not pct_change")
        };
        assert_eq!((pct.periods, pct.suffix.as_deref()), (2, Some("_pct")));
    }

    #[test]
    fn old_interpolate_records_keep_their_method() {
        let Op::Interpolate(interpolate) = loaded("interpolate").0 else {
            panic!("not interpolate")
        };
        assert_eq!(interpolate.columns, ["a"]);
        assert_eq!(
            interpolate.interpolation(),
            pb::InterpolationMethod::Nearest
        );
        assert!(interpolate.method.is_empty());
    }

    #[test]
    fn renamed_melt_and_cross_records_decode_as_they_are() {
        // Same tags, same bytes: only field names changed.
        let (op, _) = loaded("melt");
        let Op::Melt(melt) = op else {
            panic!("not melt")
        };
        assert_eq!(
            (melt.id_vars, melt.value_vars, melt.variable_name),
            (
                vec!["id".to_owned()],
                vec!["a".to_owned()],
                Some("var".to_owned())
            )
        );
        let (op, node) = loaded("cross");
        let Op::Cross(cross) = op else {
            panic!("not cross")
        };
        assert_eq!(cross.suffix.as_deref(), Some("_r"));
        assert!(cross.left_handle.is_empty() && cross.right_handle.is_empty());
        assert_eq!(node.inputs[1], "q".repeat(64));
    }

    #[test]
    fn upgraded_steps_are_not_legacy_and_others_pass_through() {
        for (name, _) in OLD_RECORDS {
            let (op, _) = loaded(name);
            assert!(!is_legacy(&op), "{name}");
        }
        let head = Op::Head(pb::HeadRequest {
            handle: String::new(),
            n: 3,
        });
        assert_eq!(upgrade(head.clone()).expect("as is"), head);
    }

    #[test]
    fn an_old_sort_with_flags_for_no_key_count_is_invalid() {
        let bad = Op::SortV0(pb::SortStepV0 {
            by: vec!["a".into(), "b".into(), "c".into()],
            descending: vec![true, false],
            ..Default::default()
        });
        let error = upgrade(bad).expect_err("two flags for three keys");
        assert_eq!(error.code(), polaroid_proto::ErrorCode::InvalidArgument);
    }
}
