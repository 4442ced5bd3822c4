"""Speech units: dense HuBERT features (:mod:`.encoder`, :mod:`.features`, :mod:`.shards`), k-means
quantizers (:mod:`.kmeans`), and their phonemic quality (:mod:`.abx`, :mod:`.quality`)."""
