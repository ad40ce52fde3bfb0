//! The sequential scoring stage: per-IP window findings, in input order.
//!
//! Workers parse batches in parallel and score each event on its own
//! ([`crate::enrichment`]). Windows need every earlier event of the same IP, so they
//! run here, one batch after another in source order: the scores are then the
//! same on every run over the same input, whatever the thread timing.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int32Builder, ListBuilder, RecordBatch, StringBuilder};
use arrow::datatypes::Int32Type;

use crate::enrichment::Parsed;
use crate::schema::{SchemaError, threat_columns};
use crate::threat::{Assessment, Lookup, ThreatEngine, WindowState};

/// Applies per-IP sliding-window rules to parsed batches, in order.
pub struct WindowScorer {
    engine: Arc<ThreatEngine>,
    state: WindowState,
}

impl WindowScorer {
    /// A scorer with empty windows.
    pub fn new(engine: Arc<ThreatEngine>) -> WindowScorer {
        let state = engine.windows();
        WindowScorer { engine, state }
    }

    /// Feeds every event of `parsed` to the windows and returns its events
    /// with the threat columns updated where a window rule fired.
    pub fn apply(&mut self, parsed: &Parsed) -> Result<RecordBatch, SchemaError> {
        /// How many requests ahead windows are looked up.
        const AHEAD: usize = 8;
        let requests = &parsed.windows;
        let lookup = |state: &WindowState, row: usize| {
            let w = requests.get(row)?;
            Some(state.lookup(w.ip?, w.ts_us))
        };
        let mut ahead: [Option<Lookup>; AHEAD] =
            std::array::from_fn(|row| lookup(&self.state, row));
        let mut changed = Vec::new();
        for (row, w) in requests.iter().enumerate() {
            let found =
                std::mem::replace(&mut ahead[row % AHEAD], lookup(&self.state, row + AHEAD));
            let Some(found) = found else { continue };
            let findings = self.state.observe_at(found, w.ts_us, w.blocked, w.uri_hash);
            if !findings.is_empty() {
                let before = Assessment {
                    score: w.score,
                    level: w.level,
                    reasons: Vec::new(),
                };
                changed.push((row, self.engine.combine(before, &findings)));
            }
        }
        if changed.is_empty() {
            return Ok(parsed.events.clone());
        }
        rewrite_threat_columns(&parsed.events, &changed)
    }
}

/// Rebuilds the three threat columns with `changed` rows' new scores, levels
/// and extra reasons; other rows are copied.
fn rewrite_threat_columns(
    batch: &RecordBatch,
    changed: &[(usize, Assessment)],
) -> Result<RecordBatch, SchemaError> {
    let [score_i, level_i, reasons_i] = threat_columns();
    let scores = batch.column(score_i).as_primitive::<Int32Type>();
    let levels = batch.column(level_i).as_string::<i32>();
    let reasons = batch.column(reasons_i).as_list::<i32>();

    let rows = batch.num_rows();
    let mut new_scores = Int32Builder::with_capacity(rows);
    let mut new_levels = StringBuilder::with_capacity(rows, rows * 4);
    let mut new_reasons = ListBuilder::new(StringBuilder::new());
    let mut next = changed.iter().peekable();
    for row in 0..rows {
        let old = reasons.value(row);
        let old = old.as_string::<i32>();
        for reason in old.iter().flatten() {
            new_reasons.values().append_value(reason);
        }
        match next.next_if(|(r, _)| *r == row) {
            Some((_, a)) => {
                new_scores.append_value(i32::from(a.score));
                new_levels.append_value(a.level.as_str());
                for reason in &a.reasons {
                    new_reasons.values().append_value(reason.to_string());
                }
            }
            None => {
                new_scores.append_value(scores.value(row));
                new_levels.append_value(levels.value(row));
            }
        }
        new_reasons.append(true);
    }
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[score_i] = Arc::new(new_scores.finish());
    columns[level_i] = Arc::new(new_levels.finish());
    columns[reasons_i] = Arc::new(new_reasons.finish());
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}
