#!/bin/bash
H=/tmp/herald
O=/tmp/b8
for i in 1 2 3; do
  for p in 16 64; do
    $H bench publish --publishers $p --duration 3s --rounds 2 -o json >> $O/publish.jsonl 2>>$O/log.txt
  done
done
for i in 1 2 3 4 5; do
  $H bench e2e --rate 20000 --duration 4s --rounds 2 -o json >> $O/e2e.jsonl 2>>$O/log.txt
done
echo done >> $O/log.txt
