//! The `swamp` binary.

// One thread: the work is I/O-bound and a second worker only adds cross-thread
// wakeups (15-20 % of the client CPU of a push of many small files). Anything
// that can block for long (hashing, copying) runs on blocking threads, so the
// lock's heartbeat is never held up.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let code = swamp_datastore::run().await;
    std::process::exit(code);
}
