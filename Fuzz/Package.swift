// swift-tools-version: 6.1
// libFuzzer targets for every parser of untrusted input (docs/FUZZING.md). A package of its own, so the
// main build never links libFuzzer's `main`: build and run with `tools/fuzz.sh TARGET SECONDS`.
import PackageDescription

let package = Package(
    name: "ShadowMoverFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "ShadowMover", path: "..")],
    targets: [
        .executableTarget(
            name: "shadowmover-fuzz",
            dependencies: [
                .product(name: "ChunkStore", package: "ShadowMover"),
                .product(name: "ShadowCopy", package: "ShadowMover"),
                .product(name: "JobFormat", package: "ShadowMover"),
                .product(name: "JSONFormat", package: "ShadowMover"),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
