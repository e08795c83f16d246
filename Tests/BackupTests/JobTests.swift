import ChunkStore
import Foundation
import Testing

@Suite("jobs")
struct JobTests {
    @Test("job validate reports every mistake with its line")
    func validate() throws {
        let s = Scratch("jobs")
        let path = s.sub("bad.toml")
        write(
            path,
            Array(
                """
                # a job with many mistakes
                sources = ["relative/path"]
                codec = "gzip"
                one_file_system = "yes"
                colour = "blue"

                [retention]
                keep_last = 0
                keep_daily = 0
                prune = true
                [chunker]
                min = 10
                """.utf8))
        let r = try CLI.run(["job", "validate", path])
        #expect(r.code == 1)
        #expect(r.stderr.contains("\(path):1: the job names no store"))
        #expect(r.stderr.contains("\(path):2: source 'relative/path' must be an absolute path"))
        #expect(r.stderr.contains("\(path):3: unknown codec 'gzip'"))
        #expect(r.stderr.contains("\(path):4: 'one_file_system' takes true or false"))
        #expect(r.stderr.contains("\(path):5: unknown key 'colour'"))
        #expect(r.stderr.contains("\(path):8: every retention rule is 0"))
        #expect(r.stderr.contains("\(path):12: chunker min size 10 is out of range"))
        #expect(try CLI.run(["job", "validate", Shell.tool("example-job.toml")]).code == 0)
    }

    @Test("job run backs up, applies retention, and records every run in the history")
    func run() throws {
        let s = Scratch("jobrun")
        let source = s.sub("data")
        mkdirs(source + "/cache")
        write(source + "/keep.txt", Array("keep".utf8))
        write(source + "/scratch.tmp", [1])
        write(source + "/cache/x", [2])
        let job = s.sub("nightly.toml")
        write(
            job,
            Array(
                """
                store = "\(s.sub("store"))"
                sources = ["\(source)"]
                excludes = ["*.tmp", "cache"]
                [shadow_copy]
                enabled = false
                [retention]
                keep_last = 2
                prune = true
                """.utf8))
        for i in 0..<3 {
            write(source + "/n", [UInt8(i)])
            let r = try CLI.run(["job", "run", job])
            #expect(r.code == 0, "\(r.stderr)")
        }
        let store = try Store(path: s.sub("store"))
        let snapshots = try store.snapshots().records
        #expect(snapshots.count == 2)
        #expect(snapshots.allSatisfy { $0.record.tags == ["job:nightly"] })
        let h = try CLI.run(["job", "history", "--store", s.sub("store"), "--json"])
        struct R: Decodable { var job: String; var result: String; var forgotten: Int }
        let history = try JSONDecoder().decode([R].self, from: Data(h.stdout.utf8))
        #expect(history.map(\.result) == ["success", "success", "success"])
        #expect(history.map(\.forgotten) == [0, 0, 1])
        _ = try restore(store, "latest", to: s.sub("r"))
        #expect(FileManager.default.fileExists(atPath: s.sub("r") + source + "/keep.txt"))
        #expect(!FileManager.default.fileExists(atPath: s.sub("r") + source + "/scratch.tmp"))
        #expect(!FileManager.default.fileExists(atPath: s.sub("r") + source + "/cache"))
        // A failing run is recorded too.
        write(job, Array("store = \"\(s.sub("store"))\"\nsources = [\"\(s.sub("gone"))\"]\n[shadow_copy]\nenabled = false\n".utf8))
        #expect(try CLI.run(["job", "run", job]).code == 1)
        let after = try JSONDecoder().decode([R].self, from: Data(try CLI.run(["job", "history", "--store", s.sub("store"), "--json"]).stdout.utf8))
        #expect(after.last?.result == "failed")
    }
}

@Suite("job files: hostile input")
struct JobFileInputTests {
    @Test("a job file with arrays nested thousands deep is an error naming its line, not a crash")
    func deepArrays() throws {
        let s = Scratch("deep-job")
        let path = s.sub("deep.toml")
        write(path, Array(("sources = " + String(repeating: "[", count: 20_000) + "\n").utf8))
        let r = try CLI.run(["job", "validate", path])
        #expect(r.code == 1)
        #expect(r.stderr.contains("deep.toml:1") && r.stderr.contains("nest deeper"), "\(r.stderr)")
    }

    // Found by the job-file fuzzer: a time limit too large for a Duration in milliseconds trapped.
    @Test("a time limit that is huge, infinite or not a number is an error naming its line and option, not a crash")
    func hugeSeconds() throws {
        let s = Scratch("huge-seconds")
        let path = s.sub("huge.toml")
        let keys = ["freeze_timeout", "commit_timeout", "retry_backoff", "wait"]
        let values = ["1e300", "inf", "nan", "31536001", "-1"]
        for key in keys {
            for value in values {
                write(path, Array("store = \"/tmp/store\"\nsources = [\"/tmp\"]\n[shadow_copy]\nenabled = true\n\(key) = \(value)\n".utf8))
                let r = try CLI.run(["job", "validate", path])
                #expect(r.code == 1, "\(key) = \(value)")
                #expect(r.stderr.contains("huge.toml:5: 'shadow_copy.\(key)' takes a positive number of seconds, at most 31536000"), "\(r.stderr)")
            }
            write(path, Array("store = \"/tmp/store\"\nsources = [\"/tmp\"]\n[shadow_copy]\nenabled = true\n\(key) = 31536000\n".utf8))
            #expect(try CLI.run(["job", "validate", path]).code == 0, "a year is allowed for \(key)")
        }
        for option in ["--freeze-timeout", "--commit-timeout", "--retry-backoff", "--wait"] {
            for value in ["1e300", "inf", "nan", "-5"] {
                let r = try CLI.run(["backup", "--store", s.sub("store"), "--writers-dir", "/nonexistent", option, value, s.sub("none")])
                #expect(r.code != 0 && r.stderr.contains(option) && r.stderr.contains("seconds"), "\(option) \(value): \(r.stderr)")
                #expect(!r.stderr.contains("Fatal error"), "\(r.stderr)")
            }
        }
        let r = try CLI.run(["backup", "--store", s.sub("store"), "--no-shadow-copy", "--progress-interval", "inf", s.sub("none")])
        #expect(r.code != 0 && r.stderr.contains("--progress-interval"), "\(r.stderr)")
    }
}
