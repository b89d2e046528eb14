//! Token budgets: per run, per session, per day. Checked before every model call, with
//! the request's `max_tokens` clamped to what is left, so a budget is a hard cap rather
//! than a line crossed by one more call.

use std::fmt;
use std::sync::Arc;

use pai_types::SessionName;

use crate::error::Result;

/// Why a turn ended before the model was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// A token budget is used up.
    Budget {
        /// Which one.
        budget: Budget,
        /// Its cap, in tokens.
        cap: u64,
        /// Tokens counted against it so far.
        used: u64,
    },
    /// The next request alone would need more tokens than a budget has left.
    RequestOverBudget {
        /// Which one.
        budget: Budget,
        /// The request's estimated size, in tokens.
        needed: u64,
        /// What the budget has left.
        left: u64,
    },
    /// Agent mode: `--max-steps` tool rounds ran.
    StepLimit {
        /// The limit that was reached.
        steps: u32,
    },
}

/// Which token budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Budget {
    /// `--budget-tokens` for this run.
    Run,
    /// The session's own budget (`pai <session> budget N`); it never resets.
    Session(SessionName),
    /// `[budget] daily_tokens`, all sessions together, per UTC day.
    Daily,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Run => f.write_str("the token budget for this run"),
            Budget::Session(s) => write!(f, "the token budget of session '{s}'"),
            Budget::Daily => f.write_str("the daily token cap"),
        }
    }
}

impl Budget {
    /// What the user can do about it.
    fn hint(&self) -> String {
        match self {
            Budget::Run => "raise --budget-tokens".into(),
            Budget::Session(s) => format!(
                "session budgets never reset: raise it with 'pai {s} budget <tokens>' or remove it with 'pai {s} budget none'"
            ),
            Budget::Daily => {
                "raise [budget] daily_tokens in config.toml or wait for the next UTC day".into()
            }
        }
    }
}

impl StopReason {
    /// What the user can do to go on.
    pub fn hint(&self) -> String {
        match self {
            StopReason::Budget { budget, .. } | StopReason::RequestOverBudget { budget, .. } => {
                budget.hint()
            }
            StopReason::StepLimit { .. } => "raise --max-steps".into(),
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Budget {
                budget: Budget::Daily,
                cap,
                used,
            } => write!(
                f,
                "the daily token cap ({cap}; {used} used today) was reached"
            ),
            StopReason::Budget { budget, cap, used } => {
                write!(f, "{budget} ({cap}; {used} used) was reached")
            }
            StopReason::RequestOverBudget {
                budget,
                needed,
                left,
            } => write!(
                f,
                "the next request alone is about {needed} tokens, more than the {left} left of {budget}"
            ),
            StopReason::StepLimit { steps } => write!(f, "the step limit ({steps}) was reached"),
        }
    }
}

/// Token caps beyond one run's, set by the session and the config.
#[derive(Clone, Default)]
pub struct Budgets {
    /// The session's budget (tokens over its whole history), when the session sets none.
    pub session: Option<u64>,
    /// `[budget] daily_tokens` and where today's use is read from, before every call.
    pub daily: Option<(u64, Arc<dyn UsageLedger>)>,
}

impl fmt::Debug for Budgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budgets")
            .field("session", &self.session)
            .field("daily", &self.daily.as_ref().map(|(cap, _)| cap))
            .finish()
    }
}

/// Where today's token use (all sessions, this UTC day) is read from: the audit log.
pub trait UsageLedger: Send + Sync {
    /// Tokens used today, every call recorded so far included.
    fn used_today(&self) -> Result<u64>;
}

impl UsageLedger for pai_audit::SqliteAudit {
    fn used_today(&self) -> Result<u64> {
        let today = jiff::Timestamp::now().to_string();
        Ok(self
            .usage(Some(&today[..10]))?
            .iter()
            .map(|r| r.prompt_tokens + r.completion_tokens)
            .sum())
    }
}

/// One run's spending against every budget that applies to it.
pub(crate) struct Spend<'a> {
    pub run_cap: Option<u64>,
    pub session: Option<(&'a SessionName, u64, u64)>,
    pub daily: Option<(u64, &'a dyn UsageLedger)>,
    /// Tokens this run used so far (folds included).
    pub used: u64,
}

/// Room for the next call: the tightest budget and how much it has left.
pub(crate) struct Headroom {
    pub budget: Budget,
    pub left: u64,
}

impl Spend<'_> {
    /// The tightest budget's headroom, or the reason nothing more may be sent.
    pub fn headroom(&self) -> Result<Option<Headroom>, StopReason> {
        let mut tightest: Option<Headroom> = None;
        let mut consider = |budget: Budget, cap: u64, used: u64| {
            if used >= cap {
                return Err(StopReason::Budget { budget, cap, used });
            }
            let left = cap - used;
            if tightest.as_ref().is_none_or(|t| left < t.left) {
                tightest = Some(Headroom { budget, left });
            }
            Ok(())
        };
        if let Some(cap) = self.run_cap {
            consider(Budget::Run, cap, self.used)?;
        }
        if let Some((name, cap, history)) = self.session {
            consider(Budget::Session(name.clone()), cap, history + self.used)?;
        }
        if let Some((cap, ledger)) = self.daily {
            // Read per call: a long chat must reach the cap too. A ledger that cannot be
            // read must not let a capped user spend unchecked.
            let today = ledger.used_today().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read today's usage; treating the cap as reached");
                cap
            });
            consider(Budget::Daily, cap, today)?;
        }
        Ok(tightest)
    }

    /// The `max_tokens` a request of about `input` tokens may ask for, or why it may not
    /// be sent at all.
    pub fn allow(&self, input: u64) -> Result<Option<u64>, StopReason> {
        match self.headroom()? {
            None => Ok(None),
            Some(h) if input >= h.left => Err(StopReason::RequestOverBudget {
                budget: h.budget,
                needed: input,
                left: h.left,
            }),
            Some(h) => Ok(Some(h.left - input)),
        }
    }
}
