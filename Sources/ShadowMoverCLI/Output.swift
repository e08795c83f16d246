import ChunkStore
import DataMover
import Foundation
import JSONFormat

enum Output {
    /// Prints `value` as pretty, key-sorted JSON on stdout.
    static func json<T: Encodable>(_ value: T) throws {
        let data = try JSONFormat.encoder(pretty: true).encode(value)
        FileHandle.standardOutput.write(data)
        FileHandle.standardOutput.write(Data("\n".utf8))
    }

    /// One compact JSON object on one line (JSON lines: progress events, then the summary).
    static func jsonLine<T: Encodable>(_ value: T, to handle: FileHandle = .standardOutput) throws {
        var data = try JSONFormat.encoder().encode(value)
        data.append(0x0A)
        handle.write(data)
    }

    /// A live progress line on a terminal (stderr), redrawn in place.
    static func progressLine(_ p: ProgressEvent) {
        let total = p.scanComplete ? bytes(p.bytesTotal) : bytes(p.bytesTotal) + "+"
        let eta = p.etaSeconds.map { String(format: "ETA %.0fs", $0) } ?? "ETA …"
        var file = p.currentFile ?? ""
        if file.count > 40 { file = "…" + file.suffix(39) }
        let text = String(format: "[%.0fs] %@ %@ / %@  %@  %@  %@", p.elapsedSeconds, p.action, bytes(p.bytesDone), total, rate(p.bytesPerSecond), eta, file)
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + text).utf8))
    }

    /// Progress reports for a long command: on a terminal a line on stderr redrawn every 0.25 s; with
    /// --json a JSON line a second — on stdout for backup, whose output is JSON lines, on stderr for
    /// the commands whose stdout is one JSON report; none otherwise (a pipe, a log, cron).
    static func progress(json: Bool, linesOnStdout: Bool = false, options: ProgressOptions) -> ProgressSink? {
        var reporting: ProgressSink
        if json {
            reporting = ProgressSink(interval: .seconds(1)) { event in try? jsonLine(event, to: linesOnStdout ? .standardOutput : .standardError) }
        } else if isatty(STDERR_FILENO) == 1 {
            reporting = ProgressSink(interval: .milliseconds(250)) { event in progressLine(event) }
        } else {
            return nil
        }
        if let seconds = options.progressInterval { reporting.interval = .milliseconds(Int64(max(1, (seconds * 1000).rounded()))) }
        return reporting
    }

    /// Runs `body`, then clears the terminal's progress line (before the command's own output).
    static func withProgress<T>(json: Bool, _ body: () throws -> T) rethrows -> T {
        defer { if !json && isatty(STDERR_FILENO) == 1 { clearProgressLine() } }
        return try body()
    }

    static func clearProgressLine() { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }

    static func line(_ text: String) { print(text) }

    static func warn(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

    /// 1536 → "1.5 KiB"
    static func bytes<I: BinaryInteger>(_ n: I) -> String {
        var value = Double(n)
        for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
            if value < 1024 || unit == "TiB" {
                return unit == "B" ? "\(Int(value)) B" : String(format: "%.1f %@", value, unit)
            }
            value /= 1024
        }
        return "\(n) B"
    }

    /// Bytes per second as MB/s (10^6), the unit peers and benchmarks quote.
    static func rate(_ bytesPerSecond: Double) -> String { String(format: "%.1f MB/s", bytesPerSecond / 1e6) }

    static func time(_ date: Date) -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        f.timeZone = TimeZone.current
        return f.string(from: date)
    }

    /// Left-aligned columns.
    static func table(_ header: [String], _ rows: [[String]]) {
        let all = [header] + rows
        var widths = Array(repeating: 0, count: header.count)
        for r in all { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        func fmt(_ r: [String]) -> String {
            r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }
        print(fmt(header))
        print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "))
        for r in rows { print(fmt(r)) }
    }
}

/// A command that cannot do what it was asked, for a reason that is not its arguments' syntax (those
/// are `ValidationError`s, which print the usage too): the message names the thing and the fix.
struct CommandError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
