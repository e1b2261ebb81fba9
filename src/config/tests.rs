//! The configuration's tests.

use super::*;

#[test]
fn for_model_takes_every_default_and_nothing_from_the_environment() {
    // Variables no other test sets; the process environment is shared by the tests.
    std::env::set_var("MAX_CLIENT_BATCH_SIZE", "7");
    std::env::set_var("API_KEY_FILE", "/nonexistent/keys");
    let config = Config::for_model("models/x");
    std::env::remove_var("MAX_CLIENT_BATCH_SIZE");
    std::env::remove_var("API_KEY_FILE");
    let defaults = Cli::parse_from(["sentiment-server"]).config;
    assert_eq!(config.max_client_batch_size, defaults.max_client_batch_size);
    assert_ne!(config.max_client_batch_size, 7);
    assert_eq!(config.api_key_file, None);
    assert_eq!(config.model_dir(), Path::new("models/x"));
}
