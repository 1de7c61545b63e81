//! Logging: human-readable by default, JSON lines when configured.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// For the benchmark: logging as [`init`] does, plus a count of the SQL statements sqlx
/// runs (one `sqlx::query` event each, sessions included), in all and per statement text.
/// Counting makes sqlx describe every statement, so production does not do it.
pub fn init_counting_statements(config: &Config) -> std::sync::Arc<StatementCounts> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let counts = std::sync::Arc::new(StatementCounts::default());
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let statements = tracing_subscriber::filter::Targets::new()
        .with_target("sqlx::query", tracing::Level::TRACE);
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(StatementCount(counts.clone()).with_filter(statements))
        .try_init();
    counts
}

/// The statements run so far: in all, and by their SQL text (whitespace collapsed), so the
/// benchmark can say which statements a login costs.
#[derive(Default)]
pub struct StatementCounts {
    total: std::sync::atomic::AtomicU64,
    by_text: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl StatementCounts {
    pub fn total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Each statement's text and how often it ran.
    pub fn by_text(&self) -> Vec<(String, u64)> {
        match self.by_text.lock() {
            Ok(map) => map.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            Err(_) => Vec::new(),
        }
    }
}

struct StatementCount(std::sync::Arc<StatementCounts>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StatementCount {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0
            .total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut text = StatementText::default();
        event.record(&mut text);
        let key = if text.statement.trim().is_empty() {
            text.summary
        } else {
            text.statement
        };
        let key = key.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Ok(mut map) = self.0.by_text.lock() {
            *map.entry(key).or_default() += 1;
        }
    }
}

/// sqlx puts the first words in `summary` and the whole statement, when longer, in
/// `db.statement`.
#[derive(Default)]
struct StatementText {
    summary: String,
    statement: String,
}

impl tracing::field::Visit for StatementText {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_owned(),
            "db.statement" => self.statement = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "summary" => self.summary = format!("{value:?}"),
            "db.statement" => self.statement = format!("{value:?}"),
            _ => {}
        }
    }
}
