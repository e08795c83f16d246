import Foundation

/// Identify and select (VSS steps 1–2): every writer's Writer Metadata Document, the components
/// chosen, and the Backup Components Document built from them.
extension Coordinator {
    /// Asks every writer for its metadata (as `shadowmover writers` shows them).
    public func identify() -> [WriterReport] {
        let deadline = ContinuousClock.now + options.eventTimeout
        let group = DispatchGroup()
        for slot in slots {
            group.enter()
            Thread {
                do {
                    slot.metadata = try slot.writer.identify(WriterContext(setID: self.setID, deadline: deadline))
                    slot.state = .stable
                } catch let e as WriterError {
                    slot.state = .failedAtIdentify
                    slot.lastError = e
                } catch {
                    slot.state = .failedAtIdentify
                    slot.lastError = WriterError(.nonRetryable, "\(error)")
                }
                group.leave()
            }.start()
        }
        group.wait()
        return slots.map(\.report)
    }

    /// Applies the selection: which writers take part and which of their components are backed up.
    func select() throws {
        guard let selection = options.selection else {
            for slot in slots {
                slot.selected = true
                slot.selectedComponents = slot.metadata?.components.map(\.fullPath) ?? []
            }
            return
        }
        var unmatched = Set(selection)
        for slot in slots {
            let names = [slot.writer.label, slot.metadata?.name].compactMap { $0 }
            var chosen: [String] = []
            for component in slot.metadata?.components ?? [] {
                for s in selection {
                    let whole = names.contains(s)
                    let one = names.contains { s == "\($0)/\(component.fullPath)" }
                    if whole || one || !component.selectable {
                        chosen.append(component.fullPath)
                        if whole || one { unmatched.remove(s) }
                    }
                }
            }
            for s in selection where names.contains(s) { unmatched.remove(s) }
            var seen = Set<String>()
            slot.selectedComponents = chosen.filter { seen.insert($0).inserted }
            slot.selected = selection.contains { s in names.contains { s == $0 || s.hasPrefix($0 + "/") } }
        }
        if !unmatched.isEmpty {
            throw ShadowCopyError.selection(
                "no writer or component matches \(unmatched.sorted().joined(separator: ", ")): list them with `shadowmover writers`")
        }
    }

    /// The backup components document (files as they are at identify), the file descriptors of the
    /// selected components, and the writers' excludes.
    func buildComponents() -> (BackupComponentsDocument, [FileDescriptor], [FileDescriptor]) {
        var document = BackupComponentsDocument()
        var specs: [FileDescriptor] = []
        var excludes: [FileDescriptor] = []
        for slot in slots {
            guard let m = slot.metadata else { continue }
            excludes += m.excludes
            var entries: [BackupComponentsDocument.ComponentEntry] = []
            for c in m.components {
                let selected = slot.selected && slot.selectedComponents.contains(c.fullPath)
                let expanded = c.files.flatMap { ComponentFiles.expand($0, excluding: m.excludes) }
                if selected { specs += c.files }
                entries.append(
                    .init(logicalPath: c.logicalPath, name: c.name, type: c.type, selected: selected, files: expanded, backupSucceeded: nil, freezeInfo: nil))
            }
            document.writers.append(
                .init(
                    name: m.name, classID: m.classID, instanceID: m.instanceID, instanceName: m.instanceName, components: entries,
                    restoreMethod: m.restoreMethod.rawValue))
        }
        return (document, specs, excludes)
    }
}
