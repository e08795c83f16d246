import Foundation
import ShadowCopy

/// Human-readable lines for a shadow copy session.
enum SessionText {
    static func print(_ r: SessionReport) {
        let providers = r.shadowCopies.map { "\($0.volume.mountPoint): \($0.provider.rawValue)" }.joined(separator: ", ")
        Output.line("  shadow copy:  set \(r.setID.prefix(8)), \(providers.isEmpty ? "none" : providers)\(r.attempts > 1 ? ", \(r.attempts) attempts" : "")")
        let writers = r.writers.map { "\($0.label) \($0.state)" }
        // Recorded when the snapshot record is written: backup-complete is sent after that commit point.
        if !writers.isEmpty { Output.line("  writers:      \(writers.joined(separator: "; ")) (state at commit)") }
        if let w = r.freezeWindow {
            Output.line(String(format: "  freeze window: %.2f ms", w.totalMs))
            for p in w.phases {
                let kind = p.kind.padding(toLength: 7, withPad: " ", startingAt: 0)
                Output.line(String(format: "    %@ +%8.2f ms %8.2f ms  %@", kind, p.startMs, p.durationMs, p.subject))
            }
        }
    }
}
