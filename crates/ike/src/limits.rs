//! Protocol constants and timers, each with its RFC section.
