//! Writes `docs/runtime-contract.md` from the products' run-time contracts
//! (`src/product/contract/`); a unit test fails when the checked-in file differs.

fn main() -> std::io::Result<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runtime-contract.md");
    std::fs::write(&path, lgtm_operator::product::contract::markdown())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
