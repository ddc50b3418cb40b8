//! Wall-clock time as the agent stores it: Unix seconds in container and
//! image records and `exit.json`, Unix milliseconds in cluster objects.

fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// Unix seconds now.
pub fn unix_secs() -> i64 {
    since_epoch().as_secs() as i64
}

/// Unix milliseconds now.
pub fn unix_ms() -> i64 {
    since_epoch().as_millis() as i64
}
