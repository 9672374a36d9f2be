//! The INFO-and-above tracing events of the test's thread (a `#[tokio::test]` runs the
//! source's tasks on it), to check what is logged how often.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One logged event.
#[derive(Clone, Debug)]
pub struct Line {
    pub level: Level,
    pub target: String,
    pub message: String,
    pub fields: BTreeMap<String, String>,
}

/// The events captured so far.
#[derive(Clone, Debug, Default)]
pub struct Captured(Arc<Mutex<Vec<Line>>>);

impl Captured {
    pub fn lines(&self) -> Vec<Line> {
        self.0.lock().expect("captured lines").clone()
    }

    /// Lines of this crate at `level` whose `kind` field is `kind`.
    pub fn count(&self, level: Level, kind: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| {
                l.level == level
                    && l.target.starts_with("k8s_source")
                    && l.fields.get("kind").map(String::as_str) == Some(kind)
            })
            .count()
    }
}

/// Capture on this thread until the guard is dropped.
pub fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(Capture(captured.clone()).with_filter(LevelFilter::INFO));
    let guard = tracing::subscriber::set_default(subscriber);
    (captured, guard)
}

struct Capture(Captured);

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = Line {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: fields.0.remove("message").unwrap_or_default(),
            fields: fields.0,
        };
        self.0.0.lock().expect("captured lines").push(line);
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}
