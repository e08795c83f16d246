import ArgumentParser
import Foundation
import ShadowCopy

struct Writers: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the writers, their state and their metadata (like `vssadmin list writers`).")

    @OptionGroup var output: OutputOptions
    @OptionGroup(title: "Writers") var writerOptions: WriterOptions

    func run() throws {
        let writers = try writerOptions.discovery.writers()
        let coordinator = Coordinator(writers: writers, options: CoordinatorOptions())
        let reports = coordinator.identify()
        for w in writers { w.shutdown() }
        if output.json {
            try Output.json(reports)
            return
        }
        if reports.isEmpty {
            Output.line("no writers (looked in \(writerOptions.writersDir); add --sqlite, --exec-writer or --fsfreeze-hook)")
        }
        for r in reports {
            Output.line("Writer name: '\(r.name ?? r.label)'")
            Output.line("   Source: \(r.label)")
            if let m = r.metadata {
                Output.line("   Writer Id: {\(m.classID)}")
                Output.line("   Writer Instance Id: {\(m.instanceID)}  Instance name: \(m.instanceName)")
                Output.line("   Usage: \(m.usageType.rawValue)  Source type: \(m.sourceType.rawValue)  Restore method: \(m.restoreMethod.rawValue)")
            }
            Output.line("   State: \(r.state)")
            Output.line("   Last error: \(r.lastError ?? "No error")")
            for c in r.metadata?.components ?? [] {
                Output.line("   Component: \(c.fullPath) (\(c.type.rawValue)\(c.selectable ? "" : ", not selectable"))")
                for f in c.files { Output.line("      \(f.path)/\(f.filespec)\(f.recursive ? " (recursive)" : "")") }
            }
            Output.line("")
        }
    }
}
