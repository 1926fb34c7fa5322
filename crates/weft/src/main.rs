fn main() {
    std::process::exit(weft::main());
}
