//! Integration tests: the real `callinfo` binary against its own simulator, over HTTP on
//! loopback. One module per capability.

mod util;

mod auth;
mod bad_input;
mod combos;
mod cron;
mod csv_io;
mod errors;
mod faults;
mod files;
mod first_hour;
mod gateway;
mod model;
mod objects;
mod operator;
mod parquet_io;
mod rate;
mod resume;
mod secrets;
mod shared;
mod shutdown;
mod sim;
mod stress;
mod tls;
