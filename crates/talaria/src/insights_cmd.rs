//! `talaria insights` and chat's `/usage`: recorded token usage and cost, grouped by model, by
//! task (turn, compression, title, review, memory nudge) and by day.
//!
//! Costs are what the store recorded at call time; a call whose model had no known price adds
//! nothing and is counted as unpriced, so a total is never presented as complete when it is not
//! (shown as "—" when nothing was priced, "≥ $x" when part was).

use std::collections::BTreeMap;

use clap::Args;
use serde_json::{Value, json};
use talaria_core::{SessionId, Usage};
use talaria_store::{Store, UsageFilter, UsageLine};

use crate::context;

#[derive(Debug, Args)]
pub struct InsightsArgs {
    /// Cover the last N days (today included).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Usage summed over some calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    /// US dollars of the priced calls; `None` when none was priced.
    pub cost: Option<f64>,
    pub unpriced_calls: u64,
}

impl Tally {
    fn add(&mut self, line: &UsageLine) {
        let u: &Usage = &line.usage;
        self.calls += line.calls;
        // Stored counts are what providers reported: saturate rather than overflow.
        self.prompt_tokens = self.prompt_tokens.saturating_add(u.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(u.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(u.cached_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(u.cache_write_tokens);
        if let Some(c) = line.cost {
            self.cost = Some(self.cost.unwrap_or(0.0) + c);
        }
        self.unpriced_calls += line.unpriced_calls;
    }

    fn to_json(&self) -> Value {
        json!({
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cost_usd": self.cost,
            "unpriced_calls": self.unpriced_calls,
        })
    }

    fn cost_text(&self) -> String {
        match self.cost {
            None => "—".to_owned(),
            Some(c) if self.unpriced_calls > 0 => format!("≥ ${c:.4}"),
            Some(c) => format!("${c:.4}"),
        }
    }
}

/// Usage grouped every way the reports show it.
#[derive(Debug, Default)]
pub struct Report {
    pub days: Option<u32>,
    pub sessions: usize,
    /// `provider:model` (just the model when the provider was not recorded).
    pub by_model: BTreeMap<String, Tally>,
    pub by_task: BTreeMap<String, Tally>,
    /// `YYYY-MM-DD`, local time.
    pub by_day: BTreeMap<String, Tally>,
    pub total: Tally,
}

impl Report {
    pub fn of(lines: &[UsageLine], days: Option<u32>) -> Self {
        let mut report = Report {
            days,
            ..Report::default()
        };
        let mut sessions = std::collections::BTreeSet::new();
        for line in lines {
            sessions.insert(line.session.as_str());
            let model = match &line.provider {
                Some(p) => format!("{p}:{}", line.model),
                None => line.model.clone(),
            };
            report.by_model.entry(model).or_default().add(line);
            report
                .by_task
                .entry(line.task.clone())
                .or_default()
                .add(line);
            report.by_day.entry(line.day.clone()).or_default().add(line);
            report.total.add(line);
        }
        report.sessions = sessions.len();
        report
    }

    pub fn to_json(&self) -> Value {
        let group = |m: &BTreeMap<String, Tally>| -> serde_json::Map<String, Value> {
            m.iter().map(|(k, t)| (k.clone(), t.to_json())).collect()
        };
        json!({
            "days": self.days,
            "sessions": self.sessions,
            "by_model": group(&self.by_model),
            "by_task": group(&self.by_task),
            "by_day": group(&self.by_day),
            "total": self.total.to_json(),
        })
    }

    /// The tables, with the per-day one only when asked for.
    pub fn render(&self, with_days: bool) -> String {
        let mut out = String::new();
        table(&mut out, "model", &self.by_model);
        out.push('\n');
        table(&mut out, "task", &self.by_task);
        if with_days {
            out.push('\n');
            table(&mut out, "day", &self.by_day);
        }
        out.push('\n');
        let total = BTreeMap::from([("total".to_owned(), self.total.clone())]);
        table(&mut out, "", &total);
        if self.total.unpriced_calls > 0 {
            out.push_str(&format!(
                "{} call(s) used models without a known price (add input_price/output_price in [[providers.NAME.models]]).\n",
                self.total.unpriced_calls
            ));
        }
        out
    }
}

fn table(out: &mut String, heading: &str, rows: &BTreeMap<String, Tally>) {
    let width = rows
        .keys()
        .map(|k| k.chars().count())
        .chain([heading.len(), 5])
        .max()
        .unwrap_or(5);
    out.push_str(&format!(
        "{heading:<width$}  {:>6}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}\n",
        "calls", "prompt", "cached", "cache-wr", "output", "cost"
    ));
    for (name, t) in rows {
        out.push_str(&format!(
            "{name:<width$}  {:>6}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}\n",
            t.calls,
            t.prompt_tokens,
            t.cached_tokens,
            t.cache_write_tokens,
            t.completion_tokens,
            t.cost_text()
        ));
    }
}

/// `/usage`: one session's usage by model and task.
///
/// # Errors
/// A store error.
pub async fn session_usage(store: &Store, id: &SessionId) -> anyhow::Result<String> {
    let lines = store
        .usage_lines(UsageFilter {
            session: Some(id.clone()),
            since_ms: None,
        })
        .await?;
    if lines.is_empty() {
        return Ok(format!("session {id}: no model calls yet\n"));
    }
    let report = Report::of(&lines, None);
    let t = &report.total;
    Ok(format!(
        "session {id}: {} tokens in {} model call(s), cost {}\n\n{}",
        t.prompt_tokens.saturating_add(t.completion_tokens),
        t.calls,
        t.cost_text(),
        report.render(false)
    ))
}

pub async fn run(args: InsightsArgs) -> anyhow::Result<()> {
    let home = context::home()?;
    let store = context::open_store(&home).await?;
    // Local midnight N-1 days ago, so `--days 1` is today.
    let start = jiff::Zoned::now()
        .start_of_day()?
        .checked_sub(jiff::Span::new().days(i64::from(args.days) - 1))?;
    let lines = store
        .usage_lines(UsageFilter {
            session: None,
            since_ms: Some(start.timestamp().as_millisecond()),
        })
        .await?;
    let report = Report::of(&lines, Some(args.days));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
        return Ok(());
    }
    println!(
        "last {} day(s): {} session(s), {} model call(s)\n",
        args.days, report.sessions, report.total.calls
    );
    if report.total.calls > 0 {
        print!("{}", report.render(true));
    }
    Ok(())
}
