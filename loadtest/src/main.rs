//! The bundled load tester. Its scenarios arrive with the load-testing issue; today it
//! only proves the workspace wiring by linking the broker's codec.

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "loadtest has no scenarios yet (shardmq codec version {}); see the load-testing issue",
        shardmq::protocol::Version::V5 as u8
    )
}
