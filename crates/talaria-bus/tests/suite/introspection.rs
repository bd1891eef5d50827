//! What the mirrors serve agrees with the checked-in XML (the daemons' own suites check the
//! real servers the same way, through `talaria_bus::introspection::check_served`).

use talaria_bus::{names, paths};

use super::mirror;
use super::private_bus::PrivateBus;

#[tokio::test]
async fn served_interfaces_match_the_checked_in_xml() {
    let bus = PrivateBus::start_scratch();
    let _servers = mirror::serve_all(&bus.address).await;
    let client = bus.connect().await;
    for (name, path) in [
        (names::AGENT, paths::AGENT),
        (names::EXECUTOR, paths::EXECUTOR),
        (names::SCHEDULER, paths::SCHEDULER),
        (names::GATEWAY, paths::GATEWAY),
    ] {
        talaria_bus::introspection::check_served(&client, name, path, name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
