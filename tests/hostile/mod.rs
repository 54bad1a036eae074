//! Hostile neighbours (issue 22): what a hostile webhook, a careless publisher, a slow HTTP
//! client, a wide entry or colliding partition IDs may try, and the bound each is held to.
//! Every test here failed on the code before its fix.

mod dead_letters;
mod http_clients;
mod labels;
mod partitions;
mod webhook;
