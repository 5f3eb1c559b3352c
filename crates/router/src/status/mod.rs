//! The operator surface: what the router knows about itself, served as a page, JSON and metrics.

pub mod admin;
pub mod charts;
pub mod events;
pub mod guard;
pub mod metrics;
pub mod page;
pub mod server;
pub mod sessions;
pub mod sign_in;
pub mod state;
pub mod tokens;
pub mod traffic_view;

pub use server::StatusServer;
pub use state::SharedStatus;
