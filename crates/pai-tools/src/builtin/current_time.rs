use async_trait::async_trait;
use jiff::{Timestamp, ZonedDateTime};
use serde::Deserialize;

use super::{info, parse_args};
use crate::tool::{Effect, Tool, ToolContext, ToolError, ToolInfo, ToolOutput};

/// `current_time`: the local time with its offset and zone, and UTC, in ISO 8601.
#[derive(Debug, Clone)]
pub struct CurrentTime {
    info: ToolInfo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {}

impl CurrentTime {
    /// The tool, ready to register.
    pub fn new() -> Self {
        let info = info(
            "current_time",
            "The current date and time: local time with its UTC offset, time zone and weekday, \
             the same instant in UTC (both ISO 8601), and Unix seconds. Takes no arguments.",
            serde_json::json!({
                "type": "object",
                "properties": {},
                "additionalProperties": false
            }),
            Effect::Read,
        );
        Self { info }
    }
}

impl Default for CurrentTime {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Tool for CurrentTime {
    fn info(&self) -> &ToolInfo {
        &self.info
    }

    async fn call(
        &self,
        args: serde_json::Value,
        _cx: &ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        let Args {} = parse_args(args)?;
        let now = ZonedDateTime::now();
        // Whole seconds: sub-second digits only cost the model tokens.
        let instant = Timestamp::from_second(now.timestamp().as_second())
            .map_err(|e| ToolError::Failed(format!("cannot read the clock: {e}")))?;
        let local = instant.to_zoned_datetime(now.time_zone().clone());
        let zone = now.time_zone().iana_name().unwrap_or("system time zone");
        Ok(ToolOutput::text(format!(
            "local: {} ({zone}, {})\nutc: {instant}\nunix: {}",
            local.strftime("%Y-%m-%dT%H:%M:%S%:z"),
            local.strftime("%A"),
            instant.as_second()
        )))
    }
}
