//! Prompt mode's running summary: turns past the threshold are folded into it, in pieces
//! that each fit the model's window.

use pai_audit::EventKind;
use pai_types::{DataClass, Origin, Provenance, Usage, estimate_message_tokens};

use super::budget::Spend;
use super::egress::Call;
use super::{Engine, FOLD_LABEL, Scope};
use crate::error::Result;
use crate::session::SessionSnapshot;

/// Fold calls one turn may make; what is left waits for the next turn.
const MAX_PIECES: usize = 8;

impl Engine {
    /// Folds the unfolded turns into the summary, piece by piece, storing the summary
    /// after each piece so a later failure loses nothing. `after` is what the turn's own
    /// request needs: a piece the budgets cannot pay for alongside it is not sent.
    /// Returns the usage of the fold calls made, `None` when none was.
    pub(super) async fn fold(
        &self,
        scope: &Scope<'_>,
        snapshot: &SessionSnapshot,
        spend: &mut Spend<'_>,
        after: u64,
    ) -> Result<Option<Usage>> {
        let history = &snapshot.history;
        let mut summary = snapshot.meta.summary.clone();
        let mut summary_class = snapshot.meta.summary_class;
        let mut folded = snapshot.meta.folded.min(history.len());
        let mut total: Option<Usage> = None;
        for _ in 0..MAX_PIECES {
            if folded >= history.len() {
                break;
            }
            let rest = &history[folded..];
            let n = self.context.fold_piece(scope.model, &summary, rest);
            let mut messages = self.context.fold_request(scope.model, &summary, &rest[..n]);
            // The turns and the summary being folded, as one part of their highest class.
            let class = rest[..n]
                .iter()
                .map(|e| e.class)
                .fold(summary_class, DataClass::max);
            if let Some(turns) = messages.last_mut() {
                turns.provenance = Provenance::new(Origin::History, class);
            }
            let estimate: u64 = messages.iter().map(estimate_message_tokens).sum();
            let Ok(left) = spend.allow(estimate + after) else {
                tracing::info!("no budget left for a fold; the turn goes on without it");
                break;
            };
            // A summary must fit later requests: never let it grow past half the window.
            let cap = self.context.budget(scope.model) / 2;
            let max_tokens = Some(left.map_or(cap, |l| l.min(cap)));
            let reply = self
                .call(
                    scope,
                    Call {
                        messages,
                        label: FOLD_LABEL,
                        tools: Vec::new(),
                        stream: false,
                        max_tokens,
                        kind: EventKind::Summary,
                        schema: None,
                    },
                    &mut |_| {},
                )
                .await?;
            spend.used += reply.usage.total();
            total.get_or_insert_with(Usage::default).add(&reply.usage);
            if reply.text.trim().is_empty()
                || !self.store.fold(
                    scope.session,
                    folded,
                    (reply.text.clone(), reply.class),
                    folded + n,
                )?
            {
                // An empty summary is no summary; a concurrent fold already moved on.
                break;
            }
            summary = reply.text;
            summary_class = reply.class;
            folded += n;
        }
        Ok(total)
    }
}
