//! Reusable pieces of the pages, one component per file.

pub mod confirm_dialog;
pub mod drawer;
pub mod dropdown;
pub mod instance_row;
pub mod line_chart;
pub mod log_viewer;
pub mod players_chart;
pub mod resource_history_chart;
pub mod resource_progress_bar;
pub mod spawner_table;
pub mod stats_card;
pub mod terminal;
