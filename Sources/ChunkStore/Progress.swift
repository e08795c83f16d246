import Foundation

/// Where a long command stands (backup, restore, check --read-data, prune, copy), as progress reports
/// show it: on a terminal a line redrawn in place, with --json one JSON object per report.
public struct ProgressEvent: Sendable, Codable {
    /// Always "progress" (a JSON line's kind, beside backup's "summary").
    public var type = "progress"
    /// What is running: "backup", "restore", "check", "prune", "copy".
    public var action: String
    /// Seconds since the command started.
    public var elapsedSeconds: Double
    /// Bytes of the work done.
    public var bytesDone: UInt64
    /// Bytes to do, as known so far; final once `scanComplete`.
    public var bytesTotal: UInt64
    /// Files (or packs) done.
    public var filesDone: Int
    /// Files (or packs) found so far.
    public var filesTotal: Int
    /// True once `bytesTotal` and `filesTotal` are final.
    public var scanComplete: Bool
    /// The average rate since the start.
    public var bytesPerSecond: Double
    /// nil until the total is known and the rate is measured.
    public var etaSeconds: Double?
    /// The file (or pack) being worked on, where the command says.
    public var currentFile: String?
}

/// Where a progress report goes, and how often.
public struct ProgressSink: Sendable {
    /// Time between reports.
    public var interval: Duration
    /// Called on the progress thread with each report.
    public var report: @Sendable (ProgressEvent) -> Void

    /// Reports to `report` every `interval`.
    public init(interval: Duration, report: @escaping @Sendable (ProgressEvent) -> Void) {
        self.interval = interval
        self.report = report
    }
}

/// Counters a command's threads update (per read, per file or per pack, never per chunk) and a ticker
/// thread that reports them at an interval once `start`ed.
public final class ProgressMeter: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private let action: String
    private var bytesDone: UInt64 = 0
    private var bytesTotal: UInt64 = 0
    private var filesDone = 0
    private var filesTotal = 0
    private var scanComplete = false
    private var currentFile: String?
    private var stopped = false
    private let started = ContinuousClock.now

    /// A meter for `action` ("backup", "restore", …), counting from now.
    public init(action: String) { self.action = action }

    /// Work found: `bytes` more to do (in `files` more files).
    public func found(bytes: UInt64, files: Int = 1) {
        lock.withLock {
            bytesTotal += bytes; filesTotal += files
        }
    }
    /// The whole of the work is known (`found` is done).
    public func totalKnown() { lock.withLock { scanComplete = true } }
    /// `bytes` of the work are done.
    public func done(_ bytes: Int) { lock.withLock { bytesDone += UInt64(bytes) } }
    /// A file (or pack) being worked on now.
    public func current(_ name: String) { lock.withLock { currentFile = name } }
    /// A file is done; `unreadBytes` counts work it needed none for (an unchanged file).
    public func finishedFile(unreadBytes: UInt64 = 0) {
        lock.withLock {
            filesDone += 1; bytesDone += unreadBytes
        }
    }

    /// Where the work stands now.
    public func snapshot() -> ProgressEvent {
        lock.withLock {
            let seconds = (ContinuousClock.now - started).seconds
            let rate = seconds > 0 ? Double(bytesDone) / seconds : 0
            let eta: Double? = scanComplete && rate > 0 ? Double(bytesTotal &- min(bytesDone, bytesTotal)) / rate : nil
            return ProgressEvent(
                action: action, elapsedSeconds: seconds, bytesDone: bytesDone, bytesTotal: bytesTotal, filesDone: filesDone, filesTotal: filesTotal,
                scanComplete: scanComplete, bytesPerSecond: rate, etaSeconds: eta, currentFile: currentFile)
        }
    }

    /// Reports every `reporting.interval` until `stop` (nil: only counts).
    public func start(_ reporting: ProgressSink?) {
        guard let reporting else { return }
        let t = Thread { [self] in
            while true {
                Thread.sleep(forTimeInterval: reporting.interval.seconds)
                if lock.withLock({ stopped }) { return }
                reporting.report(snapshot())
            }
        }
        t.name = "progress"
        t.start()
    }

    /// Ends the reports (the ticker's next wake-up returns).
    public func stop() { lock.withLock { stopped = true } }
}
