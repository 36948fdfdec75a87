"""Using trained classifiers: prediction on image files, evaluation on a dataset split, attention maps, pictures."""
