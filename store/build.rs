//! `sqlx::migrate!` embeds the migrations when this crate compiles; without this, adding a
//! migration file would not rebuild the crate and a binary would silently lack it.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
