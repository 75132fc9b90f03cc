module chronos/bench/sync/go

go 1.19
