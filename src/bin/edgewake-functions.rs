//! The bundled function runtime as its own binary (see `edgewake::functions`).

fn main() -> std::io::Result<()> {
    edgewake::functions::run()
}
