//! Polaroid's `polaroid.v1.DataFrameService` against the established contract
//! (`contract/seed.proto`, written from shared/SEED-CONTRACT.md): which of the 49 calls an
//! established client, built from that contract, can call with the messages it knows.
//!
//! For each rpc of the seed: Polaroid has an rpc of that name, with the same streaming on
//! both sides, and request and response messages of a compatible shape. Messages are
//! compared by shape, never by name, recursively: every field of the seed's message is in
//! Polaroid's under the same number with the same name, the same type (the same scalar; a
//! message or an enum of a compatible shape), the same label (repeated or not, map or not,
//! with the same key and value types) and the same presence. Every value of a seed enum is
//! in Polaroid's enum under the same number with the same name. Polaroid may have more
//! fields and values than the seed (new numbers): that is how it adds what it offers more.
//! A difference of names only (a field of another name, enum values named with or without
//! their enum's prefix) counts too, marked `[names only]`: the bytes on the wire are the
//! same, the generated code and the JSON mapping are not.
//!
//! Presence is explicit presence, as proto3 defines it: a scalar or enum field is either
//! plain (its default value is not sent) or has presence (`optional`, or a member of a
//! oneof; a oneof has the same wire encoding as `optional` fields). A message field always
//! has presence: `optional` changes nothing about it (descriptor.proto says so), so a
//! message field `optional` on one side and plain on the other is printed as a note, not
//! counted as a difference.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet,
    MethodDescriptorProto, ServiceDescriptorProto,
};

/// The service both contracts define.
const SERVICE: &str = "polaroid.v1.DataFrameService";

/// The number of calls the established contract defines.
const SEED_CALLS: usize = 49;

/// The calls of the established contract that Polaroid still serves with other message
/// shapes, names or streaming: the work left for issue 23 (the test prints why each
/// differs). The test fails if a listed call now matches the contract (remove it from
/// here: the list only shrinks) or if a call not listed differs (a regression of the
/// contract).
const STILL_DIFFERENT: &[&str] = &[
    // Other bytes on the wire: numbers, types, labels, maps, presence or streaming.
];

#[test]
fn polaroid_serves_the_seed_contract_except_the_listed_calls() {
    let seed = compile_seed();
    let polaroid = FileDescriptorSet::decode(polaroid_proto::FILE_DESCRIPTOR_SET)
        .expect("polaroid_proto::FILE_DESCRIPTOR_SET decodes");
    let seed_calls = Index::new(&seed).service(SERVICE).method.len();
    assert_eq!(
        seed_calls, SEED_CALLS,
        "seed.proto defines every call of the contract"
    );

    let report = compare(&seed, &polaroid);
    println!(
        "{} of the seed's {seed_calls} calls differ in Polaroid's {SERVICE}:",
        report.differences.len()
    );
    for (call, reasons) in &report.differences {
        if reasons.iter().all(|r| r.names_only) {
            println!("- {call} (names only: the same bytes on the wire)");
        } else {
            println!("- {call}");
        }
        for reason in reasons {
            println!("    {reason:?}");
        }
    }
    if !report.notes.is_empty() {
        println!(
            "Notes (message fields `optional` on one side only: the same on the wire and in \
             generated code, not counted):"
        );
        for note in &report.notes {
            println!("    {note}");
        }
    }

    let listed: BTreeSet<&str> = STILL_DIFFERENT.iter().copied().collect();
    assert_eq!(
        listed.len(),
        STILL_DIFFERENT.len(),
        "STILL_DIFFERENT lists a call twice"
    );
    let differing: BTreeSet<&str> = report.differences.keys().map(String::as_str).collect();
    let fixed: Vec<&str> = listed.difference(&differing).copied().collect();
    let regressed: Vec<&str> = differing.difference(&listed).copied().collect();
    assert!(
        fixed.is_empty() && regressed.is_empty(),
        "listed in STILL_DIFFERENT but now as the contract defines them (remove them from the \
         list): {fixed:?}; differing from the contract but not listed: {regressed:?}"
    );
}

#[test]
fn the_comparator_reports_each_kind_of_difference() {
    let seed = compile_seed();
    let same = compare(&seed, &seed);
    assert!(same.differences.is_empty(), "{:?}", same.differences);
    assert!(same.notes.is_empty(), "{:?}", same.notes);

    // More than the seed is allowed: a new field, a new enum value.
    let mut more = seed.clone();
    message_mut(&mut more, "SelectRequest")
        .field
        .push(FieldDescriptorProto {
            name: Some("exprs".into()),
            number: Some(3),
            label: Some(Label::Repeated as i32),
            r#type: Some(Type::Message as i32),
            type_name: Some(".polaroid.v1.Expression".into()),
            json_name: Some("exprs".into()),
            ..Default::default()
        });
    let mut extra_value = enum_mut(&mut more, "JoinType").value[1].clone();
    extra_value.name = Some("SEMI".into());
    extra_value.number = Some(6);
    enum_mut(&mut more, "JoinType").value.push(extra_value);
    let more = compare(&seed, &more);
    assert!(more.differences.is_empty(), "{:?}", more.differences);

    type Mutation = fn(&mut FileDescriptorSet);
    let cases: [(&str, Mutation, &[&str], &str); 10] = [
        (
            "a missing rpc",
            |fds| method_mut(fds, "Clone").name = Some("Copy".into()),
            &["Clone"],
            "Clone: no such rpc in Polaroid",
        ),
        (
            "a field number",
            |fds| field_mut(fds, "SelectRequest", "columns").number = Some(12),
            &["Select"],
            "SelectRequest.columns=2: seed repeated string, polaroid has no field 2",
        ),
        (
            "a label",
            |fds| field_mut(fds, "DropRequest", "columns").label = Some(Label::Optional as i32),
            &["Drop"],
            "DropRequest.columns=2: seed repeated string, polaroid string",
        ),
        (
            "an enum value",
            |fds| enum_mut(fds, "JoinType").value[1].number = Some(9),
            &["Join"],
            "enum JoinType: 1 INNER missing in polaroid",
        ),
        (
            "an enum value's name",
            |fds| enum_mut(fds, "FillMethod").value[3].name = Some("FILL_MEDIAN".into()),
            &["FillNan", "FillNull"],
            "enum FillMethod: values of another meaning: 3 FILL_MEAN vs FILL_MEDIAN",
        ),
        (
            "a streaming flag",
            |fds| method_mut(fds, "Heartbeat").server_streaming = Some(true),
            &["Heartbeat"],
            "Heartbeat: seed unary, polaroid server streaming",
        ),
        (
            "a nested message's field type",
            |fds| field_mut(fds, "ColumnInfo", "nullable").r#type = Some(Type::String as i32),
            &["GetSchema"],
            "ColumnInfo.nullable=3: seed bool, polaroid string",
        ),
        (
            "a field deep inside the recursive Expression",
            |fds| field_mut(fds, "WindowExpr", "window_size").r#type = Some(Type::Int32 as i32),
            &["Filter", "WithColumn", "WithColumns"],
            "WindowExpr.window_size=2: seed int64, polaroid int32",
        ),
        (
            "a presence",
            |fds| {
                let alias = field_mut(fds, "LagColumn", "alias");
                alias.proto3_optional = None;
                alias.oneof_index = None;
            },
            &["Lag", "Lead"],
            "LagColumn.alias=3: seed optional string, polaroid string",
        ),
        (
            "a map's value type",
            |fds| {
                let entry = &mut message_mut(fds, "HeartbeatResponse").nested_type[0];
                entry.field[1].r#type = Some(Type::String as i32);
            },
            &["Heartbeat"],
            "HeartbeatResponse.alive=1: seed map<string, bool>, polaroid map<string, string>",
        ),
    ];
    for (what, mutate, calls, reason) in cases {
        let mut mutated = seed.clone();
        mutate(&mut mutated);
        let report = compare(&seed, &mutated);
        let differing: Vec<&str> = report.differences.keys().map(String::as_str).collect();
        let mut expected = calls.to_vec();
        expected.sort_unstable();
        assert_eq!(differing, expected, "{what}: {:?}", report.differences);
        for call in calls {
            assert!(
                report.differences[*call]
                    .iter()
                    .any(|r| r.text.contains(reason)),
                "{what}: {call} should say {reason:?}: {:?}",
                report.differences[*call]
            );
        }
    }
}

/// seed.proto, compiled as a client built from the contract would compile it.
fn compile_seed() -> FileDescriptorSet {
    let contract = concat!(env!("CARGO_MANIFEST_DIR"), "/contract");
    protox::compile(["seed.proto"], [contract]).expect("contract/seed.proto compiles")
}

/// What differs, call by call, and the notes on what does not count.
struct Report {
    differences: BTreeMap<String, Vec<Reason>>,
    notes: Vec<String>,
}

/// One difference, and whether it is only of names: a field of another name but the same
/// number, type, label and presence, or enum values whose names differ by a prefix
/// (`EQ`, `BINARY_OPERATOR_EQ`). The same bytes on the wire, but other names in generated
/// code and in the JSON mapping (and a renamed field may mean something else).
struct Reason {
    text: String,
    names_only: bool,
}

impl std::fmt::Debug for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)?;
        if self.names_only {
            f.write_str(" [names only]")?;
        }
        Ok(())
    }
}

/// Compares every call of the seed's [`SERVICE`] with `polaroid`'s.
fn compare(seed: &FileDescriptorSet, polaroid: &FileDescriptorSet) -> Report {
    let seed = Index::new(seed);
    let polaroid = Index::new(polaroid);
    let mut report = Report {
        differences: BTreeMap::new(),
        notes: Vec::new(),
    };
    let ours = polaroid.service(SERVICE);
    for method in &seed.service(SERVICE).method {
        let name = method.name();
        let mut call = Comparison {
            seed: &seed,
            polaroid: &polaroid,
            messages: HashSet::new(),
            enums: HashSet::new(),
            reasons: Vec::new(),
            notes: Vec::new(),
        };
        match ours.method.iter().find(|m| m.name() == name) {
            None => call.differs(format!("{name}: no such rpc in Polaroid"), false),
            Some(other) => {
                if streaming(method) != streaming(other) {
                    call.differs(
                        format!(
                            "{name}: seed {}, polaroid {}",
                            streaming(method),
                            streaming(other)
                        ),
                        false,
                    );
                }
                call.message(method.input_type(), other.input_type());
                call.message(method.output_type(), other.output_type());
            }
        }
        report
            .notes
            .extend(call.notes.into_iter().map(|n| format!("{name}: {n}")));
        if !call.reasons.is_empty() {
            report.differences.insert(name.to_owned(), call.reasons);
        }
    }
    report
}

fn streaming(method: &MethodDescriptorProto) -> &'static str {
    match (method.client_streaming(), method.server_streaming()) {
        (false, false) => "unary",
        (false, true) => "server streaming",
        (true, false) => "client streaming",
        (true, true) => "bidirectional streaming",
    }
}

/// Every message, enum and service of a descriptor set by its full name (`.pkg.Name`,
/// services without the leading dot, as methods name their types).
struct Index<'a> {
    messages: HashMap<String, &'a DescriptorProto>,
    enums: HashMap<String, &'a EnumDescriptorProto>,
    services: HashMap<String, &'a ServiceDescriptorProto>,
}

impl<'a> Index<'a> {
    fn new(fds: &'a FileDescriptorSet) -> Self {
        let mut index = Index {
            messages: HashMap::new(),
            enums: HashMap::new(),
            services: HashMap::new(),
        };
        for file in &fds.file {
            let scope = match file.package() {
                "" => String::new(),
                package => format!(".{package}"),
            };
            for message in &file.message_type {
                index.add_message(&scope, message);
            }
            for e in &file.enum_type {
                index.enums.insert(format!("{scope}.{}", e.name()), e);
            }
            for service in &file.service {
                let name = format!("{scope}.{}", service.name());
                index.services.insert(name[1..].to_owned(), service);
            }
        }
        index
    }

    fn add_message(&mut self, scope: &str, message: &'a DescriptorProto) {
        let name = format!("{scope}.{}", message.name());
        for nested in &message.nested_type {
            self.add_message(&name, nested);
        }
        for e in &message.enum_type {
            self.enums.insert(format!("{name}.{}", e.name()), e);
        }
        self.messages.insert(name, message);
    }

    fn service(&self, name: &str) -> &'a ServiceDescriptorProto {
        self.services
            .get(name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    fn message(&self, name: &str) -> &'a DescriptorProto {
        self.messages
            .get(name)
            .unwrap_or_else(|| panic!("no message {name}"))
    }

    fn enumeration(&self, name: &str) -> &'a EnumDescriptorProto {
        self.enums
            .get(name)
            .unwrap_or_else(|| panic!("no enum {name}"))
    }

    /// The key and value fields of a map field's entry message, if it is a map.
    fn map_entry(
        &self,
        field: &FieldDescriptorProto,
    ) -> Option<(&'a FieldDescriptorProto, &'a FieldDescriptorProto)> {
        if field.label() != Label::Repeated || field.r#type() != Type::Message {
            return None;
        }
        let entry = self.message(field.type_name());
        if !entry.options.as_ref().is_some_and(|o| o.map_entry()) {
            return None;
        }
        let key = entry.field.iter().find(|f| f.number() == 1)?;
        let value = entry.field.iter().find(|f| f.number() == 2)?;
        Some((key, value))
    }

    /// How a field reads in a .proto file: `map<string, Expression>`, `repeated string`,
    /// `optional int64`, `ColumnExpr (oneof kind)`.
    fn describe(&self, message: &DescriptorProto, field: &FieldDescriptorProto) -> String {
        if let Some((key, value)) = self.map_entry(field) {
            return format!("map<{}, {}>", type_name(key), type_name(value));
        }
        let ty = type_name(field);
        if field.label() == Label::Repeated {
            format!("repeated {ty}")
        } else if field.proto3_optional() {
            format!("optional {ty}")
        } else if let Some(oneof) = field.oneof_index {
            let oneof = usize::try_from(oneof)
                .ok()
                .and_then(|i| message.oneof_decl.get(i))
                .map_or("?", |o| o.name());
            format!("{ty} (oneof {oneof})")
        } else {
            ty
        }
    }
}

/// A field's type as written in a .proto file (messages and enums by their short name).
fn type_name(field: &FieldDescriptorProto) -> String {
    match field.r#type() {
        Type::Message | Type::Enum | Type::Group => short(field.type_name()).to_owned(),
        scalar => scalar
            .as_str_name()
            .trim_start_matches("TYPE_")
            .to_lowercase(),
    }
}

fn short(full_name: &str) -> &str {
    full_name.rsplit('.').next().unwrap_or(full_name)
}

/// Whether a field carries presence (proto3 explicit presence).
fn has_presence(field: &FieldDescriptorProto) -> bool {
    field.r#type() == Type::Message || field.oneof_index.is_some() || field.proto3_optional()
}

/// How a field's presence is declared (what differs in the descriptor when a message
/// field is `optional` on one side only).
fn declared_presence(field: &FieldDescriptorProto) -> &'static str {
    if field.proto3_optional() {
        "optional"
    } else if field.oneof_index.is_some() {
        "in a oneof"
    } else {
        "plain"
    }
}

/// One call's comparison: the pairs (seed, Polaroid) of messages and enums under
/// comparison or compared, so that recursive types (an Expression holds Expressions)
/// are walked once, and what differs.
struct Comparison<'a> {
    seed: &'a Index<'a>,
    polaroid: &'a Index<'a>,
    messages: HashSet<(String, String)>,
    enums: HashSet<(String, String)>,
    reasons: Vec<Reason>,
    notes: Vec<String>,
}

/// A pair of types to compare by shape once their field's own comparison is recorded.
enum Nested {
    Message(String, String),
    Enum(String, String),
}

impl Comparison<'_> {
    fn differs(&mut self, text: String, names_only: bool) {
        self.reasons.push(Reason { text, names_only });
    }

    fn message(&mut self, seed_name: &str, polaroid_name: &str) {
        if !self
            .messages
            .insert((seed_name.to_owned(), polaroid_name.to_owned()))
        {
            return;
        }
        let seed = self.seed.message(seed_name);
        let ours = self.polaroid.message(polaroid_name);
        let at = located(seed_name, polaroid_name);
        for field in &seed.field {
            let number = field.number();
            let path = format!("{at}.{}={number}", field.name());
            let seed_says = self.seed.describe(seed, field);
            let Some(other) = ours.field.iter().find(|f| f.number() == number) else {
                self.differs(
                    format!("{path}: seed {seed_says}, polaroid has no field {number}"),
                    false,
                );
                continue;
            };
            let polaroid_says = self.polaroid.describe(ours, other);
            let mut nested = Vec::new();
            let same_shape = self.same_shape(field, other, &mut nested);
            if !same_shape || field.name() != other.name() {
                let (seed_says, polaroid_says) = if field.name() == other.name() {
                    (seed_says, polaroid_says)
                } else {
                    (
                        format!("`{}` {seed_says}", field.name()),
                        format!("`{}` {polaroid_says}", other.name()),
                    )
                };
                self.differs(
                    format!("{path}: seed {seed_says}, polaroid {polaroid_says}"),
                    same_shape,
                );
            } else if declared_presence(field) != declared_presence(other) {
                self.notes.push(format!(
                    "{path}: seed {seed_says}, polaroid {polaroid_says} (a message field has \
                     presence either way)"
                ));
            }
            if same_shape {
                for pair in nested {
                    match pair {
                        Nested::Message(s, o) => self.message(&s, &o),
                        Nested::Enum(s, o) => self.enumeration(&s, &o),
                    }
                }
            }
        }
    }

    /// Whether two fields (of the same number) have the same type, label, map-ness and
    /// presence, message and enum types aside: those are pushed on `nested`, to be
    /// compared by shape after.
    fn same_shape(
        &self,
        seed: &FieldDescriptorProto,
        ours: &FieldDescriptorProto,
        nested: &mut Vec<Nested>,
    ) -> bool {
        match (self.seed.map_entry(seed), self.polaroid.map_entry(ours)) {
            (Some((seed_key, seed_value)), Some((key, value))) => {
                same_type(seed_key, key, nested) && same_type(seed_value, value, nested)
            }
            (None, None) => {
                seed.label() == ours.label()
                    && (seed.label() == Label::Repeated || has_presence(seed) == has_presence(ours))
                    && same_type(seed, ours, nested)
            }
            _ => false,
        }
    }

    fn enumeration(&mut self, seed_name: &str, polaroid_name: &str) {
        if !self
            .enums
            .insert((seed_name.to_owned(), polaroid_name.to_owned()))
        {
            return;
        }
        let seed = self.seed.enumeration(seed_name);
        let ours = self.polaroid.enumeration(polaroid_name);
        let mut missing = Vec::new();
        let mut prefixed = Vec::new();
        let mut renamed = Vec::new();
        for value in &seed.value {
            let number = value.number();
            match ours.value.iter().find(|v| v.number() == number) {
                None => missing.push(format!("{number} {}", value.name())),
                Some(other) if other.name() == value.name() => {}
                Some(other) => {
                    let pair = format!("{number} {} vs {}", value.name(), other.name());
                    if same_value(seed_name, value.name(), polaroid_name, other.name()) {
                        prefixed.push(pair);
                    } else {
                        renamed.push(pair);
                    }
                }
            }
        }
        let at = located(seed_name, polaroid_name);
        if !missing.is_empty() {
            self.differs(
                format!("enum {at}: {} missing in polaroid", missing.join(", ")),
                false,
            );
        }
        if !renamed.is_empty() {
            self.differs(
                format!(
                    "enum {at}: values of another meaning: {}",
                    renamed.join(", ")
                ),
                false,
            );
        }
        if !prefixed.is_empty() {
            self.differs(
                format!(
                    "enum {at}: names differ by a prefix: {}",
                    prefixed.join(", ")
                ),
                true,
            );
        }
    }
}

/// Whether two enum value names name the same thing, one with a prefix the other lacks
/// (`EQ` and `BINARY_OPERATOR_EQ`; `FILL_FORWARD` and `FILL_NULL_STRATEGY_FORWARD`), once
/// each is stripped of its own enum's name in SCREAMING_SNAKE_CASE.
fn same_value(
    seed_enum: &str,
    seed_value: &str,
    polaroid_enum: &str,
    polaroid_value: &str,
) -> bool {
    let seed = strip_enum_prefix(seed_enum, seed_value);
    let ours = strip_enum_prefix(polaroid_enum, polaroid_value);
    seed == ours || seed.ends_with(&format!("_{ours}")) || ours.ends_with(&format!("_{seed}"))
}

fn strip_enum_prefix<'a>(enum_name: &str, value: &'a str) -> &'a str {
    let mut prefix = String::new();
    for (i, c) in short(enum_name).chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            prefix.push('_');
        }
        prefix.push(c.to_ascii_uppercase());
    }
    prefix.push('_');
    value.strip_prefix(&prefix).unwrap_or(value)
}

/// The same scalar type, or both messages or both enums (pushed on `nested`).
fn same_type(
    seed: &FieldDescriptorProto,
    ours: &FieldDescriptorProto,
    nested: &mut Vec<Nested>,
) -> bool {
    let pair = || (seed.type_name().to_owned(), ours.type_name().to_owned());
    match (seed.r#type(), ours.r#type()) {
        (Type::Message, Type::Message) | (Type::Group, Type::Group) => {
            let (s, o) = pair();
            nested.push(Nested::Message(s, o));
            true
        }
        (Type::Enum, Type::Enum) => {
            let (s, o) = pair();
            nested.push(Nested::Enum(s, o));
            true
        }
        (a, b) => a == b,
    }
}

/// A seed type, and Polaroid's in brackets when its name differs.
fn located(seed_name: &str, polaroid_name: &str) -> String {
    if short(seed_name) == short(polaroid_name) {
        short(seed_name).to_owned()
    } else {
        format!("{} [polaroid {}]", short(seed_name), short(polaroid_name))
    }
}

fn message_mut<'a>(fds: &'a mut FileDescriptorSet, name: &str) -> &'a mut DescriptorProto {
    fds.file
        .iter_mut()
        .flat_map(|f| f.message_type.iter_mut())
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no message {name}"))
}

fn field_mut<'a>(
    fds: &'a mut FileDescriptorSet,
    message: &str,
    field: &str,
) -> &'a mut FieldDescriptorProto {
    message_mut(fds, message)
        .field
        .iter_mut()
        .find(|f| f.name() == field)
        .unwrap_or_else(|| panic!("no field {message}.{field}"))
}

fn enum_mut<'a>(fds: &'a mut FileDescriptorSet, name: &str) -> &'a mut EnumDescriptorProto {
    fds.file
        .iter_mut()
        .flat_map(|f| f.enum_type.iter_mut())
        .find(|e| e.name() == name)
        .unwrap_or_else(|| panic!("no enum {name}"))
}

fn method_mut<'a>(fds: &'a mut FileDescriptorSet, name: &str) -> &'a mut MethodDescriptorProto {
    fds.file
        .iter_mut()
        .flat_map(|f| f.service.iter_mut())
        .flat_map(|s| s.method.iter_mut())
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no rpc {name}"))
}
