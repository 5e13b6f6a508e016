from docserver.cli import main

raise SystemExit(main())
