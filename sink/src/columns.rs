//! Event-schema columns of a batch, by name and typed, for the sinks that
//! read rows (the response, the alerts). A missing or mistyped column is
//! [`SinkError::Schema`]: the batch is not in the event schema.

use arrow::array::{
    Array, ArrowPrimitiveType, AsArray, ListArray, PrimitiveArray, RecordBatch, StringArray,
};

use crate::SinkError;

fn column<'a>(batch: &'a RecordBatch, name: &'static str) -> Result<&'a dyn Array, SinkError> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or(SinkError::Schema(name))
}

/// A text column.
pub(crate) fn text<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a StringArray, SinkError> {
    column(batch, name)?
        .as_string_opt::<i32>()
        .ok_or(SinkError::Schema(name))
}

/// A number or timestamp column.
pub(crate) fn primitive<'a, T: ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a PrimitiveArray<T>, SinkError> {
    column(batch, name)?
        .as_primitive_opt::<T>()
        .ok_or(SinkError::Schema(name))
}

/// A list column.
pub(crate) fn list<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a ListArray, SinkError> {
    column(batch, name)?
        .as_list_opt::<i32>()
        .ok_or(SinkError::Schema(name))
}
