//! Column kinds: how one Rust field type maps to an Arrow column.
//!
//! Each kind is a marker type naming the borrowed form a parser appends, the
//! owned form read back, the Arrow type and its builder. The event schema in
//! [`super`] is a list of `name: Kind` pairs, so the Rust row types, the Arrow
//! schema and the builders cannot drift apart.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, MapBuilder, MapFieldNames, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{
    DataType, Field, Fields, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};

/// A string builder for a batch like one of `items` strings and `bytes`
/// bytes, with a quarter more room.
fn strings_like(items: usize, bytes: usize) -> StringBuilder {
    StringBuilder::with_capacity(items + items / 4, bytes + bytes / 4)
}

/// How one field of the event schema is stored in Arrow.
pub trait Column {
    /// What a parser appends: borrows from the input where it can.
    type Ref<'a>: Copy + Default + std::fmt::Debug;
    /// What a reader gets back.
    type Owned: Clone + Default + PartialEq + std::fmt::Debug;
    /// The Arrow builder for the column.
    type Builder;

    /// Whether the column may hold nulls.
    const NULLABLE: bool;

    /// The column's Arrow type.
    fn data_type() -> DataType;
    /// A builder with room for `rows` rows.
    fn builder(rows: usize) -> Self::Builder;
    /// Appends one value.
    fn append(b: &mut Self::Builder, v: Self::Ref<'_>);
    /// Whether `v` is null. Most columns are null for most sources, so the
    /// event builder counts nulls and appends them in bulk.
    fn is_null(_v: &Self::Ref<'_>) -> bool {
        false
    }
    /// Appends `n` nulls (only called for values [`Column::is_null`] accepts).
    fn append_nulls(_b: &mut Self::Builder, _n: usize) {}
    /// Finishes the column, leaving the builder empty and sized like the
    /// finished column, so the next batch of a stream does not regrow it.
    fn finish(b: &mut Self::Builder) -> ArrayRef;
    /// Appends one owned value (tests and replays; parsers use [`Column::append`]).
    fn append_owned(b: &mut Self::Builder, v: &Self::Owned);
    /// Reads row `i` of an array already cast to [`Column::data_type`].
    fn read(a: &dyn Array, i: usize) -> Self::Owned;
}

/// Non-null UTF-8 text.
#[derive(Debug)]
pub enum Text {}
/// Nullable UTF-8 text.
#[derive(Debug)]
pub enum OptText {}
/// Non-null UTC timestamp in microseconds since the Unix epoch.
#[derive(Debug)]
pub enum Timestamp {}
/// Nullable 32-bit integer.
#[derive(Debug)]
pub enum OptI32 {}
/// Non-null 32-bit integer.
#[derive(Debug)]
pub enum I32 {}
/// Nullable 64-bit integer.
#[derive(Debug)]
pub enum OptI64 {}
/// Nullable 64-bit float.
#[derive(Debug)]
pub enum OptF64 {}
/// Nullable boolean.
#[derive(Debug)]
pub enum OptBool {}
/// Non-null list of text (empty when there is nothing).
#[derive(Debug)]
pub enum TextList {}
/// Nullable map of text to text, keys in input order (duplicates kept).
#[derive(Debug)]
pub enum TextMap {}

/// Names of the map's entry fields, as the Parquet spec writes them.
fn map_names() -> MapFieldNames {
    MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    }
}

impl Column for Text {
    type Ref<'a> = &'a str;
    type Owned = String;
    type Builder = StringBuilder;
    const NULLABLE: bool = false;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(rows: usize) -> StringBuilder {
        StringBuilder::with_capacity(rows, rows * 16)
    }
    fn append(b: &mut StringBuilder, v: &str) {
        b.append_value(v);
    }
    fn finish(b: &mut StringBuilder) -> ArrayRef {
        let a = b.finish();
        *b = strings_like(a.len(), a.value_data().len());
        Arc::new(a)
    }
    fn append_owned(b: &mut StringBuilder, v: &String) {
        b.append_value(v);
    }
    fn read(a: &dyn Array, i: usize) -> String {
        a.as_string::<i32>().value(i).to_owned()
    }
}

impl Column for OptText {
    type Ref<'a> = Option<&'a str>;
    type Owned = Option<String>;
    type Builder = StringBuilder;
    const NULLABLE: bool = true;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(rows: usize) -> StringBuilder {
        StringBuilder::with_capacity(rows, rows * 8)
    }
    fn append(b: &mut StringBuilder, v: Option<&str>) {
        b.append_option(v);
    }
    fn is_null(v: &Option<&str>) -> bool {
        v.is_none()
    }
    fn append_nulls(b: &mut StringBuilder, n: usize) {
        b.append_nulls(n);
    }
    fn finish(b: &mut StringBuilder) -> ArrayRef {
        let a = b.finish();
        *b = strings_like(a.len(), a.value_data().len());
        Arc::new(a)
    }
    fn append_owned(b: &mut StringBuilder, v: &Option<String>) {
        b.append_option(v.as_deref());
    }
    fn read(a: &dyn Array, i: usize) -> Option<String> {
        a.is_valid(i)
            .then(|| a.as_string::<i32>().value(i).to_owned())
    }
}

impl Column for Timestamp {
    type Ref<'a> = i64;
    type Owned = i64;
    type Builder = TimestampMicrosecondBuilder;
    const NULLABLE: bool = false;
    fn data_type() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    }
    fn builder(rows: usize) -> TimestampMicrosecondBuilder {
        TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC")
    }
    fn append(b: &mut TimestampMicrosecondBuilder, v: i64) {
        b.append_value(v);
    }
    fn finish(b: &mut TimestampMicrosecondBuilder) -> ArrayRef {
        let a = b.finish();
        *b = Self::builder(a.len());
        Arc::new(a)
    }
    fn append_owned(b: &mut TimestampMicrosecondBuilder, v: &i64) {
        b.append_value(*v);
    }
    fn read(a: &dyn Array, i: usize) -> i64 {
        a.as_primitive::<TimestampMicrosecondType>().value(i)
    }
}

/// Primitive columns differ only in their Arrow type and builder.
macro_rules! primitive_column {
    ($kind:ty, $rust:ty, $arrow:ty, $builder:ty, $dt:expr, nullable) => {
        impl Column for $kind {
            type Ref<'a> = Option<$rust>;
            type Owned = Option<$rust>;
            type Builder = $builder;
            const NULLABLE: bool = true;
            fn data_type() -> DataType {
                $dt
            }
            fn builder(rows: usize) -> $builder {
                <$builder>::with_capacity(rows)
            }
            fn append(b: &mut $builder, v: Option<$rust>) {
                b.append_option(v);
            }
            fn is_null(v: &Option<$rust>) -> bool {
                v.is_none()
            }
            fn append_nulls(b: &mut $builder, n: usize) {
                b.append_nulls(n);
            }
            fn finish(b: &mut $builder) -> ArrayRef {
                let a = b.finish();
                *b = <$builder>::with_capacity(a.len());
                Arc::new(a)
            }
            fn append_owned(b: &mut $builder, v: &Option<$rust>) {
                b.append_option(*v);
            }
            fn read(a: &dyn Array, i: usize) -> Option<$rust> {
                a.is_valid(i).then(|| a.as_primitive::<$arrow>().value(i))
            }
        }
    };
}

primitive_column!(
    OptI32,
    i32,
    Int32Type,
    Int32Builder,
    DataType::Int32,
    nullable
);
primitive_column!(
    OptI64,
    i64,
    Int64Type,
    Int64Builder,
    DataType::Int64,
    nullable
);
primitive_column!(
    OptF64,
    f64,
    Float64Type,
    Float64Builder,
    DataType::Float64,
    nullable
);

impl Column for I32 {
    type Ref<'a> = i32;
    type Owned = i32;
    type Builder = Int32Builder;
    const NULLABLE: bool = false;
    fn data_type() -> DataType {
        DataType::Int32
    }
    fn builder(rows: usize) -> Int32Builder {
        Int32Builder::with_capacity(rows)
    }
    fn append(b: &mut Int32Builder, v: i32) {
        b.append_value(v);
    }
    fn finish(b: &mut Int32Builder) -> ArrayRef {
        let a = b.finish();
        *b = Int32Builder::with_capacity(a.len());
        Arc::new(a)
    }
    fn append_owned(b: &mut Int32Builder, v: &i32) {
        b.append_value(*v);
    }
    fn read(a: &dyn Array, i: usize) -> i32 {
        a.as_primitive::<Int32Type>().value(i)
    }
}

impl Column for OptBool {
    type Ref<'a> = Option<bool>;
    type Owned = Option<bool>;
    type Builder = BooleanBuilder;
    const NULLABLE: bool = true;
    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn builder(rows: usize) -> BooleanBuilder {
        BooleanBuilder::with_capacity(rows)
    }
    fn append(b: &mut BooleanBuilder, v: Option<bool>) {
        b.append_option(v);
    }
    fn is_null(v: &Option<bool>) -> bool {
        v.is_none()
    }
    fn append_nulls(b: &mut BooleanBuilder, n: usize) {
        b.append_nulls(n);
    }
    fn finish(b: &mut BooleanBuilder) -> ArrayRef {
        let a = b.finish();
        *b = BooleanBuilder::with_capacity(a.len());
        Arc::new(a)
    }
    fn append_owned(b: &mut BooleanBuilder, v: &Option<bool>) {
        b.append_option(*v);
    }
    fn read(a: &dyn Array, i: usize) -> Option<bool> {
        a.is_valid(i).then(|| a.as_boolean().value(i))
    }
}

impl Column for TextList {
    type Ref<'a> = &'a [&'a str];
    type Owned = Vec<String>;
    type Builder = ListBuilder<StringBuilder>;
    const NULLABLE: bool = false;
    fn data_type() -> DataType {
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
    }
    fn builder(rows: usize) -> ListBuilder<StringBuilder> {
        ListBuilder::with_capacity(StringBuilder::new(), rows)
    }
    fn append(b: &mut ListBuilder<StringBuilder>, v: &[&str]) {
        for s in v {
            b.values().append_value(s);
        }
        b.append(true);
    }
    fn finish(b: &mut ListBuilder<StringBuilder>) -> ArrayRef {
        let a = b.finish();
        let items = a.values().as_string::<i32>();
        *b = ListBuilder::with_capacity(
            strings_like(items.len(), items.value_data().len()),
            a.len(),
        );
        Arc::new(a)
    }
    fn append_owned(b: &mut ListBuilder<StringBuilder>, v: &Vec<String>) {
        for s in v {
            b.values().append_value(s);
        }
        b.append(true);
    }
    fn read(a: &dyn Array, i: usize) -> Vec<String> {
        if a.is_null(i) {
            return Vec::new();
        }
        let list = a.as_list::<i32>().value(i);
        let items = list.as_string::<i32>();
        items
            .iter()
            .map(|s| s.unwrap_or_default().to_owned())
            .collect()
    }
}

impl Column for TextMap {
    type Ref<'a> = Option<&'a [(&'a str, &'a str)]>;
    type Owned = Option<Vec<(String, String)>>;
    type Builder = MapBuilder<StringBuilder, StringBuilder>;
    const NULLABLE: bool = true;
    fn data_type() -> DataType {
        let names = map_names();
        let entries = Fields::from(vec![
            Field::new(names.key, DataType::Utf8, false),
            Field::new(names.value, DataType::Utf8, true),
        ]);
        DataType::Map(
            Arc::new(Field::new(names.entry, DataType::Struct(entries), false)),
            false,
        )
    }
    fn builder(rows: usize) -> MapBuilder<StringBuilder, StringBuilder> {
        MapBuilder::with_capacity(
            Some(map_names()),
            StringBuilder::new(),
            StringBuilder::new(),
            rows,
        )
    }
    fn append(b: &mut MapBuilder<StringBuilder, StringBuilder>, v: Option<&[(&str, &str)]>) {
        if let Some(entries) = v {
            for (k, val) in entries {
                b.keys().append_value(k);
                b.values().append_value(val);
            }
        }
        // Appending entries and then `false` would leave them orphaned; nulls
        // have no entries, so this is always consistent.
        let _ = b.append(v.is_some());
    }
    fn finish(b: &mut MapBuilder<StringBuilder, StringBuilder>) -> ArrayRef {
        let a = b.finish();
        let (keys, values) = (a.keys().as_string::<i32>(), a.values().as_string::<i32>());
        *b = MapBuilder::with_capacity(
            Some(map_names()),
            strings_like(keys.len(), keys.value_data().len()),
            strings_like(values.len(), values.value_data().len()),
            a.len(),
        );
        Arc::new(a)
    }
    fn append_owned(
        b: &mut MapBuilder<StringBuilder, StringBuilder>,
        v: &Option<Vec<(String, String)>>,
    ) {
        if let Some(entries) = v {
            for (k, val) in entries {
                b.keys().append_value(k);
                b.values().append_value(val);
            }
        }
        let _ = b.append(v.is_some());
    }
    fn read(a: &dyn Array, i: usize) -> Option<Vec<(String, String)>> {
        if a.is_null(i) {
            return None;
        }
        let entries = a.as_map().value(i);
        let keys = entries.column(0).as_string::<i32>();
        let values = entries.column(1).as_string::<i32>();
        Some(
            (0..entries.len())
                .map(|j| {
                    (
                        keys.value(j).to_owned(),
                        // Parsers never write a null value; read one as empty.
                        if values.is_valid(j) {
                            values.value(j).to_owned()
                        } else {
                            String::new()
                        },
                    )
                })
                .collect(),
        )
    }
}
