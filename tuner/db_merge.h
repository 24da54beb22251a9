// Joining tuning databases (`tetra db merge OUT IN...`): the shards of a distributed run, or databases
// tuned on several machines, into one.
//
// The rules (the database's own, merge_record_sets in tuner/database.h):
//   - A record's identity is its workload, target, toolchain, schedule and the hardware it was measured
//     on (`measured_on`). Records of one identity are one measurement repeated: the better one is kept
//     (better_record, then the record's JSON text, so that every tie has one winner).
//   - Records that disagree only in `measured_on` (the same schedule timed on different hardware) have
//     different identities: all of them are kept, none overwrites another.
//   - So the result depends only on the set of records: the same in any order of the inputs, and
//     merging a database a second time changes nothing.
//   - Every input (and OUT, which may be new) is read before anything is written: a corrupt one is
//     refused with an error naming its file, and OUT is left untouched.
#pragma once
#include <string>
#include <vector>

#include "tuner/database.h"

namespace tetra::tuner {

struct MergeSummary {
  std::string file;   // OUT's database file
  size_t read = 0;    // records read from the inputs
  size_t before = 0;  // records in OUT before
  size_t after = 0;   // records in OUT after
  // Inputs' records of other schema versions are not merged: one line per input that had some.
  std::vector<std::string> notes;
};

// Merges the databases in `inputs` (folders, which must exist) into the database at `out` (created if
// missing; its own records stay in the merge), by the rules above, through TuningDatabase::commit
// (locked and atomic). Throws tetra::Error naming the folder or file at fault; then nothing is written.
MergeSummary merge_databases(const std::string& out, const std::vector<std::string>& inputs);

}  // namespace tetra::tuner
