//! Reusable pieces of the pages, one component per file.

pub mod build_table;
pub mod confirm_dialog;
pub mod drawer;
pub mod dropdown;
pub mod form_dialog;
pub mod instance_row;
pub mod line_chart;
pub mod log_viewer;
pub mod metrics_panel;
pub mod players_chart;
pub mod resource_history_chart;
pub mod resource_progress_bar;
pub mod rollout_panel;
pub mod spawner_table;
pub mod stats_card;
pub mod terminal;
pub mod top_consumers;
pub mod upload_panel;
