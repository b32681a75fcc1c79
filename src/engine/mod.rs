//! The engine: the run manager (background training, events, stop) and the run store on disk.
//! Nothing here touches the terminal.

pub mod events;
pub mod manager;
pub mod memory;
pub mod store;

pub use events::{EventReceiver, EventSender};
pub use manager::{EngineEvent, Launch, LaunchRequest, RunId, RunInfo, RunManager};
pub use store::{MetricPoint, RunStore};
